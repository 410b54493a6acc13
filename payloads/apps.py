from django.apps import AppConfig


class PayloadsConfig(AppConfig):
    """Content-addressed files beside each database (attachments' bytes), and what references
    them."""

    name = "payloads"
    verbose_name = "Payloads"
