from django.contrib import admin

from audit.models import AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ("created_at", "username", "action", "outcome", "target")
    list_filter = ("action", "outcome")
    search_fields = ("username", "target", "detail")
    readonly_fields = [f.name for f in AuditEntry._meta.fields]

    # Every NukeWorks admin of the current database (accounts.User.is_admin, the one
    # definition) may read the log, without a model permission to grant first; nobody may
    # add, change or delete an entry.
    def has_view_permission(self, request, obj=None):
        return bool(getattr(request.user, "is_admin", False))

    def has_module_permission(self, request):
        return self.has_view_permission(request)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
