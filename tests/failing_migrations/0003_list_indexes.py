# The real migration, so that the failing chain (0003_fails_half_way) follows the code's.

import importlib

Migration = importlib.import_module("nukeworks.companies.migrations.0003_list_indexes").Migration
