from django.contrib import admin
from django.core.paginator import Paginator
from django.utils.functional import cached_property

from nukeworks.companies import paging
from nukeworks.companies.models import Company, Project


class BoundedPaginator(Paginator):
    """The admin's paginator on a million rows: counts stop at paging.COUNT_LIMIT.

    Django's counts the whole (filtered) table for every page (~100 ms on a million rows);
    beyond the limit this one answers PostgreSQL's estimate of an unfiltered table, else the
    limit itself (the list then offers that many rows' pages; search narrows it).
    """

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        filtered = bool(getattr(getattr(queryset, "query", None), "where", None))
        return paging.count(queryset, filtered=filtered).value


class ProjectInline(admin.TabularInline):
    model = Project
    extra = 0


@admin.register(Company)
class CompanyAdmin(admin.ModelAdmin):
    list_display = ("name", "country", "is_vendor", "is_owner", "is_operator", "is_constructor")
    # No filter by country: its choices are a DISTINCT over the whole table on every page.
    list_filter = ("is_vendor", "is_owner", "is_operator", "is_constructor")
    search_fields = ("name", "country", "notes")
    inlines = [ProjectInline]
    paginator = BoundedPaginator
    show_full_result_count = False  # one count per page, not two (a million rows)


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("name", "company", "status", "capacity_mw", "cod_date")
    list_filter = ("status",)
    search_fields = ("name", "company__name")
    autocomplete_fields = ("company",)
    list_select_related = ("company",)
    paginator = BoundedPaginator
    show_full_result_count = False
