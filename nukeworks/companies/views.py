"""Home page and the company/project pages of the selected database.

The lists stay fast on a million rows (paging.py): whitelisted sorts on indexed columns,
bounded counts, a page read as ids and annotated for those rows only. Search is a substring
search (name, country, notes...) while the table is small (COUNT_LIMIT rows), and above it a
case-insensitive search of names *starting with* the term, on an index (the page says so).
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.mixins import LoginRequiredMixin
from django.contrib.messages.views import SuccessMessageMixin
from django.core.exceptions import PermissionDenied
from django.db import connections
from django.db.models import Count, ProtectedError, Q, QuerySet
from django.db.models.functions import Lower
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse, reverse_lazy
from django.views import generic

from audit import log as audit_log
from dbselect.permissions import ADMIN_DENIED, is_admin
from nukeworks.companies import paging
from nukeworks.companies.forms import CompanyForm, ProjectForm
from nukeworks.companies.models import Company, Project

PICKER_LIMIT = 20
COMPANY_PROJECTS_SHOWN = 50


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Show which database this session works on and what it holds (counts bounded)."""
    return render(
        request,
        "companies/home.html",
        {
            "company_count": paging.count(Company.objects.all(), filtered=False),
            "project_count": paging.count(Project.objects.all(), filtered=False),
        },
    )


def _is_large(model) -> bool:
    return not paging.count(model.objects.all(), filtered=False).exact


def name_prefix(queryset: QuerySet, term: str) -> QuerySet:
    """Rows whose name starts with `term`, case-insensitively, on the Lower(name) index.

    SQLite compares text by its bytes: the range [term, term + U+10FFFF) is exactly the names
    starting with it, read from the index. PostgreSQL's collations may order U+10FFFF
    otherwise, so there it is a plain LIKE 'term%' on Lower(name).
    """
    low = term.lower()
    queryset = queryset.alias(lower_name=Lower("name"))
    if connections[queryset.db].vendor != "sqlite":
        return queryset.filter(lower_name__startswith=low)
    return queryset.filter(lower_name__gte=low, lower_name__lt=low + "\U0010ffff")


class ListPage(LoginRequiredMixin, generic.TemplateView):
    """A sortable, searchable list of `model` (see the module's docstring)."""

    model = None
    search_fields: tuple[str, ...] = ()
    sorts: dict[str, paging.Sort] = {}
    default_sort = "name"

    def rows(self) -> QuerySet:
        """The queryset the page's objects are read from (by id)."""
        return self.model.objects.all()

    def base(self) -> QuerySet:
        return self.model.objects.all()

    def get_context_data(self, **kwargs):
        request = self.request
        term = request.GET.get("q", "").strip()
        sort = paging.chosen_sort(request, self.sorts, self.default_sort)
        queryset = self.base()
        order = sort.order
        prefix_search = False
        if term:
            if _is_large(self.model):
                prefix_search = True
                queryset = name_prefix(queryset, term)
                order = (Lower("name").asc(), "id")
            else:
                query = Q()
                for field in self.search_fields:
                    query |= Q(**{f"{field}__icontains": term})
                queryset = queryset.filter(query)
        filtered = bool(term) or queryset.query.has_filters()
        page = paging.paginate(request, queryset, order, filtered=filtered, rows=self.rows())
        headers = []
        for key, sort_option in self.sorts.items():
            if key.startswith("-"):
                continue
            current = sort.key.lstrip("-") == key and not prefix_search
            descending = current and sort.key.startswith("-")
            target = key if not current or descending else f"-{key}"
            headers.append(
                {
                    "key": key,
                    "label": sort_option.label,
                    "url": paging.query_string(request, sort=target, page=None),
                    "current": current,
                    "aria": ("descending" if descending else "ascending") if current else "none",
                }
            )
        return super().get_context_data(
            q=term,
            page_obj=page,
            object_list=page.object_list,
            is_paginated=page.is_paginated,
            sort=sort.key,
            headers=headers,
            prefix_search=prefix_search,
            page_links=[
                (n, paging.query_string(request, page=n) if n else "") for n in page.numbers
            ],
            previous_url=paging.query_string(request, page=page.number - 1),
            next_url=paging.query_string(request, page=page.number + 1),
            **kwargs,
        )


class CompanyList(ListPage):
    model = Company
    template_name = "companies/company_list.html"
    search_fields = ("name", "country", "notes")
    sorts = paging.sort_options(
        {
            "name": ("Name", "name"),
            "country": ("Country", "country"),
            "updated": ("Updated", "updated_at"),
        }
    )

    def rows(self) -> QuerySet:
        # Project counts for the page's rows only (the ids of one page).
        return Company.objects.annotate(project_count=Count("projects"))


class ProjectList(ListPage):
    model = Project
    template_name = "companies/project_list.html"
    search_fields = ("name", "company__name", "status", "notes")
    sorts = paging.sort_options(
        {
            "name": ("Name", "name"),
            "status": ("Status", "status"),
            "capacity": ("Capacity (MW)", "capacity_mw"),
            "cod": ("COD", "cod_date"),
        }
    )

    def base(self) -> QuerySet:
        queryset = Project.objects.all()
        company = self.request.GET.get("company", "")
        if company.isdigit():
            queryset = queryset.filter(company_id=int(company))
        return queryset

    def rows(self) -> QuerySet:
        return Project.objects.select_related("company")

    def get_context_data(self, **kwargs):
        company = self.request.GET.get("company", "")
        kwargs["company"] = (
            Company.objects.filter(pk=int(company)).first() if company.isdigit() else None
        )
        return super().get_context_data(**kwargs)


class CompanyDetail(LoginRequiredMixin, generic.DetailView):
    model = Company

    def get_context_data(self, **kwargs):
        projects = self.object.projects.order_by("name", "id")
        shown = list(projects[: COMPANY_PROJECTS_SHOWN + 1])
        return super().get_context_data(
            projects=shown[:COMPANY_PROJECTS_SHOWN],
            more_projects=len(shown) > COMPANY_PROJECTS_SHOWN,
            project_total=paging.count(projects, filtered=True),
            can_delete=is_admin(self.request.user),
            **kwargs,
        )


class ProjectDetail(LoginRequiredMixin, generic.DetailView):
    model = Project

    def get_queryset(self):
        return Project.objects.select_related("company")

    def get_context_data(self, **kwargs):
        return super().get_context_data(can_delete=is_admin(self.request.user), **kwargs)


class CompanyCreate(LoginRequiredMixin, SuccessMessageMixin, generic.CreateView):
    model = Company
    form_class = CompanyForm
    success_message = "Company “%(name)s” saved."


class CompanyUpdate(LoginRequiredMixin, SuccessMessageMixin, generic.UpdateView):
    model = Company
    form_class = CompanyForm
    success_message = "Company “%(name)s” saved."


class ProjectCreate(LoginRequiredMixin, SuccessMessageMixin, generic.CreateView):
    model = Project
    form_class = ProjectForm
    success_message = "Project “%(name)s” saved."

    def get_initial(self):
        """`?company=<id>` (the company page's "Add project") pre-selects that company."""
        initial = super().get_initial()
        company = self.request.GET.get("company", "")
        if company.isdigit():
            found = Company.objects.filter(pk=int(company)).first()
            if found is not None:
                initial["company"] = found.name
                self.from_company = found
        return initial

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)  # the form, so get_initial, first
        company = getattr(self, "from_company", None)
        if company is not None:
            context["cancel_url"] = company.get_absolute_url()
        return context


class ProjectUpdate(LoginRequiredMixin, SuccessMessageMixin, generic.UpdateView):
    model = Project
    form_class = ProjectForm
    success_message = "Project “%(name)s” saved."


class AdminDelete(LoginRequiredMixin, generic.DeleteView):
    """GET: a confirmation page; POST (with CSRF): delete. Admins of the database only; a
    refused POST is audited as `<kind>.delete_denied`, a deletion as `<kind>.delete`."""

    kind = ""
    template_name = "companies/confirm_delete.html"

    def dispatch(self, request, *args, **kwargs):
        if request.user.is_authenticated and not is_admin(request.user):
            if request.method == "POST":
                audit_log.record(
                    f"{self.kind}.delete_denied",
                    target=request.path,
                    outcome="denied",
                    detail=f"{request.method} {request.path}",
                    request=request,
                )
            raise PermissionDenied(ADMIN_DENIED)
        return super().dispatch(request, *args, **kwargs)

    def get_context_data(self, **kwargs):
        return super().get_context_data(kind=self.kind, **kwargs)

    def form_valid(self, form):
        obj = self.object
        label = f"{self.kind} {obj.pk} “{obj}”"
        try:
            obj.delete()
        except ProtectedError:
            messages.error(self.request, self.protected_message(obj))
            return HttpResponseRedirect(obj.get_absolute_url())
        audit_log.record(f"{self.kind}.delete", target=label, request=self.request)
        messages.success(self.request, f"{self.kind.capitalize()} “{obj}” deleted.")
        return HttpResponseRedirect(self.get_success_url())

    def protected_message(self, obj) -> str:
        return f"{self.kind.capitalize()} “{obj}” cannot be deleted."


class CompanyDelete(AdminDelete):
    model = Company
    kind = "company"
    success_url = reverse_lazy("companies:company-list")

    def get_context_data(self, **kwargs):
        projects = paging.count(self.object.projects.all(), filtered=True)
        return super().get_context_data(project_count=projects, **kwargs)

    def protected_message(self, obj) -> str:
        return f"Company “{obj}” still has projects: delete or move them first."


class ProjectDelete(AdminDelete):
    model = Project
    kind = "project"

    def get_success_url(self):
        return reverse("companies:company-detail", args=[self.object.company_id])


def company_search(request: HttpRequest) -> JsonResponse:
    """The project form's company picker: up to PICKER_LIMIT companies whose name starts with
    `?q=` (case-insensitively, on an index), as {"results": [{"id", "name"}]}."""
    if not request.user.is_authenticated:
        return JsonResponse({"error": "Sign in first."}, status=403)
    term = request.GET.get("q", "").strip()[:200]
    queryset = Company.objects.all()
    if term:
        queryset = name_prefix(queryset, term)
    results = list(queryset.order_by(Lower("name"), "id").values("id", "name")[:PICKER_LIMIT])
    return JsonResponse({"results": results})
