from django.urls import path

from brikk.dashboard import views

app_name = "dashboard"

urlpatterns = [
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("organization/", views.switch_organization, name="switch-organization"),
    path("", views.overview, name="overview"),
    path("overview/live/", views.overview_live, name="overview-live"),
    path("agents/", views.agent_list, name="agents"),
    path("agents/table/", views.agent_table, name="agent-table"),
    path("agents/new/", views.agent_create, name="agent-create"),
    path("agents/<uuid:pk>/", views.agent_detail, name="agent-detail"),
    path("agents/<uuid:pk>/inbox/", views.agent_inbox, name="agent-inbox"),
    path("agents/<uuid:pk>/redrive/", views.agent_redrive, name="agent-redrive"),
    path("agents/<uuid:pk>/edit/", views.agent_edit, name="agent-edit"),
    path("agents/<uuid:pk>/status/", views.agent_status, name="agent-status"),
    path("agents/<uuid:pk>/rotate-key/", views.agent_rotate, name="agent-rotate"),
    path("agents/<uuid:pk>/revoke-keys/", views.agent_revoke, name="agent-revoke"),
    path("agents/<uuid:pk>/keys/<str:prefix>/revoke/", views.agent_key_revoke, name="agent-key-revoke"),
    path("agents/<uuid:pk>/delete/", views.agent_delete, name="agent-delete"),
    path("agents/<uuid:pk>/endpoints/new/", views.endpoint_create, name="endpoint-create"),
    path("agents/<uuid:pk>/endpoints/<uuid:endpoint>/rotate/", views.endpoint_rotate, name="endpoint-rotate"),
    path("agents/<uuid:pk>/endpoints/<uuid:endpoint>/enable/", views.endpoint_enable, name="endpoint-enable"),
    path("agents/<uuid:pk>/endpoints/<uuid:endpoint>/disable/", views.endpoint_disable, name="endpoint-disable"),
    path("agents/<uuid:pk>/endpoints/<uuid:endpoint>/delete/", views.endpoint_delete, name="endpoint-delete"),
    path("echo/", views.echo, name="echo"),
    path("messages/", views.message_list, name="messages"),
    path("messages/rows/", views.message_rows, name="message-rows"),
    path("messages/<uuid:pk>/", views.message_detail, name="message-detail"),
    path("messages/<uuid:pk>/delivery/", views.message_delivery, name="message-delivery"),
    path("messages/<uuid:pk>/resend/", views.message_resend, name="message-resend"),
    path("audit/", views.audit_list, name="audit"),
]
