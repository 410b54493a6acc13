from django.apps import AppConfig


class AttachmentsConfig(AppConfig):
    """Documents attached to companies and projects; their bytes live in the payload store."""

    name = "nukeworks.attachments"
    label = "attachments"
    verbose_name = "Attachments"

    def ready(self) -> None:
        from nukeworks.attachments.models import Attachment
        from payloads import references

        # Snapshots, copies, bundles and the collector learn from this which rows name
        # payloads, without importing this app.
        references.register(Attachment._meta.db_table, "sha256")
