from django.urls import path

from coordination import views

urlpatterns = [
    path("coordination", views.EchoView.as_view(), name="coordination-echo"),
    path("coordination/", views.EchoSlashView.as_view()),
    path("coordination/health", views.HealthView.as_view(), name="coordination-health"),
    path("coordination/messages", views.MessageListView.as_view(), name="coordination-message-list"),
    path("coordination/messages/<uuid:pk>", views.MessageDetailView.as_view(), name="coordination-message-detail"),
]
