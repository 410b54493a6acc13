# A copy of nukeworks/companies/migrations/0003_list_indexes.py.

import django.db.models.functions.text
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("companies", "0002_company_website"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="company",
            index=models.Index(fields=["country", "id"], name="company_country_id"),
        ),
        migrations.AddIndex(
            model_name="company",
            index=models.Index(fields=["updated_at", "id"], name="company_updated_id"),
        ),
        migrations.AddIndex(
            model_name="company",
            index=models.Index(
                django.db.models.functions.text.Lower("name"),
                models.F("id"),
                name="company_lower_name_id",
            ),
        ),
        migrations.AddIndex(
            model_name="project",
            index=models.Index(fields=["name", "id"], name="project_name_id"),
        ),
        migrations.AddIndex(
            model_name="project",
            index=models.Index(fields=["status", "id"], name="project_status_id"),
        ),
        migrations.AddIndex(
            model_name="project",
            index=models.Index(fields=["capacity_mw", "id"], name="project_capacity_id"),
        ),
        migrations.AddIndex(
            model_name="project",
            index=models.Index(fields=["cod_date", "id"], name="project_cod_id"),
        ),
        migrations.AddIndex(
            model_name="project",
            index=models.Index(fields=["company", "name", "id"], name="project_company_name_id"),
        ),
        migrations.AddIndex(
            model_name="project",
            index=models.Index(
                django.db.models.functions.text.Lower("name"),
                models.F("id"),
                name="project_lower_name_id",
            ),
        ),
    ]
