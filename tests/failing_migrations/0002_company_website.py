from importlib import import_module

Migration = import_module("nukeworks.companies.migrations.0002_company_website").Migration
