from django.urls import path

from nukeworks.companies import views

app_name = "companies"

urlpatterns = [
    path("", views.home, name="home"),
    path("companies/", views.CompanyList.as_view(), name="company-list"),
    path("companies/new/", views.CompanyCreate.as_view(), name="company-create"),
    path("companies/search.json", views.company_search, name="company-search"),
    path("companies/<int:pk>/", views.CompanyDetail.as_view(), name="company-detail"),
    path("companies/<int:pk>/edit/", views.CompanyUpdate.as_view(), name="company-update"),
    path("companies/<int:pk>/delete/", views.CompanyDelete.as_view(), name="company-delete"),
    path("projects/", views.ProjectList.as_view(), name="project-list"),
    path("projects/new/", views.ProjectCreate.as_view(), name="project-create"),
    path("projects/<int:pk>/", views.ProjectDetail.as_view(), name="project-detail"),
    path("projects/<int:pk>/edit/", views.ProjectUpdate.as_view(), name="project-update"),
    path("projects/<int:pk>/delete/", views.ProjectDelete.as_view(), name="project-delete"),
]
