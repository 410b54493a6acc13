from importlib import import_module

Migration = import_module("nukeworks.companies.migrations.0001_initial").Migration
