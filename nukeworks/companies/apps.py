from django.apps import AppConfig


class CompaniesConfig(AppConfig):
    name = "nukeworks.companies"
    label = "companies"
    verbose_name = "Companies and projects"
