from django.contrib import admin

from nukeworks.companies.models import Company, Project


class ProjectInline(admin.TabularInline):
    model = Project
    extra = 0


@admin.register(Company)
class CompanyAdmin(admin.ModelAdmin):
    list_display = ("name", "country", "is_vendor", "is_owner", "is_operator", "is_constructor")
    list_filter = ("is_vendor", "is_owner", "is_operator", "is_constructor", "country")
    search_fields = ("name", "country", "notes")
    inlines = [ProjectInline]
    show_full_result_count = False  # one count per page, not two (a million rows)


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("name", "company", "status", "capacity_mw", "cod_date")
    list_filter = ("status",)
    search_fields = ("name", "company__name")
    autocomplete_fields = ("company",)
    list_select_related = ("company",)
    show_full_result_count = False
