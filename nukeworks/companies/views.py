"""Home page and the company/project pages of the selected database."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.contrib.auth.mixins import LoginRequiredMixin
from django.contrib.messages.views import SuccessMessageMixin
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views import generic

from nukeworks.companies.forms import CompanyForm, ProjectForm
from nukeworks.companies.models import Company, Project


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Show which database this session works on and what it holds."""
    return render(
        request,
        "companies/home.html",
        {"company_count": Company.objects.count(), "project_count": Project.objects.count()},
    )


class SearchMixin:
    search_fields: tuple[str, ...] = ()

    def get_queryset(self):
        queryset = super().get_queryset()
        term = self.request.GET.get("q", "").strip()
        if term:
            query = Q()
            for field in self.search_fields:
                query |= Q(**{f"{field}__icontains": term})
            queryset = queryset.filter(query)
        return queryset

    def get_context_data(self, **kwargs):
        return super().get_context_data(q=self.request.GET.get("q", ""), **kwargs)


class CompanyList(LoginRequiredMixin, SearchMixin, generic.ListView):
    model = Company
    paginate_by = 50
    search_fields = ("name", "country", "notes")

    def get_queryset(self):
        return super().get_queryset().annotate(project_count=Count("projects")).order_by("name")


class CompanyDetail(LoginRequiredMixin, generic.DetailView):
    model = Company


class CompanyCreate(LoginRequiredMixin, SuccessMessageMixin, generic.CreateView):
    model = Company
    form_class = CompanyForm
    success_message = "Company “%(name)s” saved."


class CompanyUpdate(LoginRequiredMixin, SuccessMessageMixin, generic.UpdateView):
    model = Company
    form_class = CompanyForm
    success_message = "Company “%(name)s” saved."


class ProjectList(LoginRequiredMixin, SearchMixin, generic.ListView):
    model = Project
    paginate_by = 50
    search_fields = ("name", "company__name", "status", "notes")

    def get_queryset(self):
        return super().get_queryset().select_related("company")


class ProjectDetail(LoginRequiredMixin, generic.DetailView):
    model = Project


class ProjectCreate(LoginRequiredMixin, SuccessMessageMixin, generic.CreateView):
    model = Project
    form_class = ProjectForm
    success_message = "Project “%(name)s” saved."


class ProjectUpdate(LoginRequiredMixin, SuccessMessageMixin, generic.UpdateView):
    model = Project
    form_class = ProjectForm
    success_message = "Project “%(name)s” saved."
