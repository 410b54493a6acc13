from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from accounts.models import User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    fieldsets = (
        *BaseUserAdmin.fieldsets,
        ("Last database", {"fields": ("last_db_path", "last_db_display_name")}),
    )
    readonly_fields = ("last_db_path", "last_db_display_name")
