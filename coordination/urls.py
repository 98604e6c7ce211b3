from django.urls import path

from brikk.lib.continued import continued_view
from coordination import inbox_views, push_views, views

urlpatterns = [
    path("coordination", views.EchoView.as_view(), name="coordination-echo"),
    path("coordination/", views.EchoSlashView.as_view()),
    path("coordination/batch", views.BatchView.as_view(), name="coordination-batch"),
    path("coordination/health", views.HealthView.as_view(), name="coordination-health"),
    path("coordination/messages", views.MessageListView.as_view(), name="coordination-message-list"),
    path("coordination/messages/<uuid:pk>", views.MessageDetailView.as_view(), name="coordination-message-detail"),
    path(
        "coordination/messages/<uuid:pk>/resend",
        push_views.MessageResendView.as_view(),
        name="coordination-message-resend",
    ),
    path(
        "coordination/messages/<uuid:pk>/attempts",
        push_views.MessageAttemptsView.as_view(),
        name="coordination-message-attempts",
    ),
    # An agent's push endpoints (here, not in agents/urls.py: the agents app does not import coordination).
    path("agents/<uuid:agent_id>/endpoints/", push_views.endpoint_list, name="push-endpoint-list"),
    path("agents/<uuid:agent_id>/endpoints/<uuid:pk>", push_views.endpoint_detail, name="push-endpoint-detail"),
    path(
        "agents/<uuid:agent_id>/endpoints/<uuid:pk>/rotate-secret",
        push_views.endpoint_rotate_secret,
        name="push-endpoint-rotate-secret",
    ),
    path("agents/<uuid:agent_id>/endpoints/<uuid:pk>/enable", push_views.endpoint_enable, name="push-endpoint-enable"),
    path(
        "agents/<uuid:agent_id>/endpoints/<uuid:pk>/disable", push_views.endpoint_disable, name="push-endpoint-disable"
    ),
    path(
        "agents/<uuid:agent_id>/endpoints/<uuid:pk>/recover", push_views.endpoint_recover, name="push-endpoint-recover"
    ),
    path("inbox/receive", continued_view(inbox_views.ReceiveView), name="inbox-receive"),
    path("inbox/stream", continued_view(inbox_views.StreamView), name="inbox-stream"),
    path("inbox/ack", inbox_views.AckView.as_view(), name="inbox-ack"),
    path("inbox/nack", inbox_views.NackView.as_view(), name="inbox-nack"),
    path("inbox/extend", inbox_views.ExtendView.as_view(), name="inbox-extend"),
    path("inbox/stats", inbox_views.StatsView.as_view(), name="inbox-stats"),
    path("dead-letters", inbox_views.DeadLetterListView.as_view(), name="dead-letter-list"),
    path("dead-letters/redrive", inbox_views.RedriveView.as_view(), name="dead-letter-redrive"),
]
