from django.db import migrations, models


def explode(apps, schema_editor):
    raise RuntimeError("simulated failure in the middle of a migration")


class Migration(migrations.Migration):
    # Not atomic: the AddField below really lands in the file before the failure, so only the
    # pre-migration snapshot can undo it.
    atomic = False

    dependencies = [("companies", "0003_list_indexes")]

    operations = [
        migrations.AddField(
            model_name="company",
            name="half_done",
            field=models.IntegerField(default=0),
        ),
        migrations.RunPython(explode, migrations.RunPython.noop),
    ]
