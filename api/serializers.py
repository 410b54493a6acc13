"""Serializers of the domain each database holds, and of the API's own answers."""

from __future__ import annotations

from rest_framework import serializers

from nukeworks.companies.models import Company, Project
from snapshots.service import MAX_NOTE


class CompanySerializer(serializers.ModelSerializer):
    class Meta:
        model = Company
        fields = [
            "id",
            "name",
            "is_vendor",
            "is_owner",
            "is_operator",
            "is_constructor",
            "country",
            "website",
            "notes",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]


class ProjectSerializer(serializers.ModelSerializer):
    company = serializers.PrimaryKeyRelatedField(queryset=Company.objects.all())

    class Meta:
        model = Project
        fields = [
            "id",
            "name",
            "company",
            "status",
            "capacity_mw",
            "cod_date",
            "notes",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]


class CredentialsSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, trim_whitespace=False)


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="Shown once; only its digest is stored.")
    expiry = serializers.DateTimeField(allow_null=True)
    database = serializers.CharField()
    username = serializers.CharField()


class CatalogProgressSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=["queued", "building", "failed", "interrupted"])
    done = serializers.IntegerField()
    total = serializers.IntegerField()
    message = serializers.CharField(allow_blank=True)
    updated = serializers.FloatField(allow_null=True)
    display_name = serializers.CharField(allow_blank=True)


class CatalogEntrySerializer(serializers.Serializer):
    label = serializers.CharField()
    display_name = serializers.CharField()
    # Not a ChoiceField: its enum would collide with the snapshots' `kind` in the schema.
    kind = serializers.CharField(
        help_text="sqlite: a file under databases/<label>/; postgresql: a PostgreSQL database "
        "an operator registered (manage.py catalog add).",
    )
    location = serializers.CharField(
        allow_null=True,
        help_text="A PostgreSQL database's host:port/dbname (never its user or password); "
        "null for a file.",
    )
    size = serializers.IntegerField(
        allow_null=True, help_text="Bytes of the file; null for a PostgreSQL database."
    )
    modified = serializers.DateTimeField(allow_null=True)
    state = serializers.ChoiceField(
        choices=["up_to_date", "needs_migration", "newer", "invalid", "preparing", "not_ready"],
        help_text=(
            "preparing: being built in the background (see progress); not_ready: a file whose "
            "building never finished (never served)."
        ),
    )
    detail = serializers.CharField(allow_blank=True)
    progress = CatalogProgressSerializer(
        allow_null=True, help_text="While the database is being prepared; else null."
    )


class ErrorBodySerializer(serializers.Serializer):
    """The one error shape (documented in the schema for every error status)."""

    class _Error(serializers.Serializer):
        code = serializers.CharField()
        message = serializers.CharField()
        detail = serializers.JSONField()

    error = _Error()


# --- Admin endpoints: snapshots and migrations (admins of the URL's database), engines
# (operators). Each answer mirrors what the matching page shows.


class SnapshotSerializer(serializers.Serializer):
    """One snapshot of the URL's database (snapshots.service.Snapshot)."""

    name = serializers.CharField()
    created_at = serializers.DateTimeField()
    size = serializers.IntegerField(help_text="Bytes.")
    created_by = serializers.CharField(allow_blank=True)
    note = serializers.CharField(allow_blank=True)
    kind = serializers.ChoiceField(choices=["manual", "safety", "pre-migration"])
    sha256 = serializers.CharField()
    source_display_name = serializers.CharField(allow_blank=True)
    schema_state = serializers.CharField(
        allow_blank=True, help_text="The snapshot's schema against the code when it was taken."
    )


class IgnoredEntrySerializer(serializers.Serializer):
    name = serializers.CharField()
    reason = serializers.CharField()


class SnapshotListSerializer(serializers.Serializer):
    snapshots = SnapshotSerializer(many=True, help_text="Newest first.")
    total_size = serializers.IntegerField(help_text="Bytes, all snapshots listed.")
    ignored = IgnoredEntrySerializer(
        many=True, help_text="Entries of the snapshots folder that are not snapshots."
    )
    ignored_more = serializers.IntegerField(help_text="Ignored entries beyond those listed.")


class SnapshotCreateSerializer(serializers.Serializer):
    note = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=MAX_NOTE,
        help_text="Optional; stored in the snapshot's sidecar, never in its name.",
    )


class RestoreResultSerializer(serializers.Serializer):
    restored = SnapshotSerializer()
    safety = SnapshotSerializer(help_text="Taken just before the restore: the database as it was.")
    carried_audit_entries = serializers.IntegerField(
        help_text="Audit entries newer than the snapshot, carried into the restored database."
    )


class MigrationStepSerializer(serializers.Serializer):
    app = serializers.CharField()
    name = serializers.CharField()


class MigrationPlanSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=["up_to_date", "needs_migration"])
    pending = MigrationStepSerializer(many=True, help_text="In the order they apply.")


class MigrationResultSerializer(serializers.Serializer):
    already_current = serializers.BooleanField(
        help_text="Someone else brought the database up to date meanwhile; nothing was applied."
    )
    applied = MigrationStepSerializer(many=True)
    snapshot = serializers.CharField(
        allow_null=True, help_text="The snapshot taken before migrating (null: none needed)."
    )


class EngineWorkerUseSerializer(serializers.Serializer):
    pid = serializers.IntegerField()
    requests = serializers.IntegerField()
    open_connections = serializers.IntegerField()
    last_used = serializers.DateTimeField()


class EngineSerializer(serializers.Serializer):
    """One database (a file or a PostgreSQL database) cached by one or more worker processes."""

    path = serializers.CharField(
        help_text="A file's path, or postgresql:<label> for a PostgreSQL database (what "
        "engines/dispose takes)."
    )
    kind = serializers.CharField(help_text="sqlite or postgresql.")
    location = serializers.CharField(
        allow_blank=True,
        help_text="A file's path, or a PostgreSQL database's URL without its password "
        "(empty when it is no longer in the catalog).",
    )
    alias = serializers.CharField()
    display_name = serializers.CharField()
    journal_mode = serializers.CharField(help_text="Empty for a PostgreSQL database.")
    network = serializers.BooleanField()
    first_used = serializers.DateTimeField()
    last_used = serializers.DateTimeField()
    requests = serializers.IntegerField()
    sessions = serializers.IntegerField(
        allow_null=True, help_text="Live sessions on it; null when they cannot be counted."
    )
    open_connections = serializers.IntegerField()
    idle = serializers.BooleanField()
    workers = EngineWorkerUseSerializer(many=True)


class EngineWorkerSerializer(serializers.Serializer):
    """One worker process of this machine."""

    pid = serializers.IntegerField()
    host = serializers.CharField()
    reported = serializers.DateTimeField()
    current = serializers.BooleanField(help_text="The worker that served this request.")
    rss = serializers.IntegerField(allow_null=True)
    fds = serializers.IntegerField(allow_null=True)
    threads = serializers.IntegerField()
    aliases = serializers.IntegerField()
    engines = serializers.IntegerField()
    open_connections = serializers.IntegerField()
    conn_max_age = serializers.IntegerField(allow_null=True)
    bytes_per_alias = serializers.IntegerField(allow_null=True)


class EngineOverviewSerializer(serializers.Serializer):
    workers = EngineWorkerSerializer(many=True)
    engines = EngineSerializer(many=True)
    idle_seconds = serializers.FloatField()
    missing_workers = serializers.IntegerField(
        help_text="Worker processes that did not answer in time (their figures may be old)."
    )
    sessions_countable = serializers.BooleanField()


class EngineDisposeSerializer(serializers.Serializer):
    path = serializers.CharField(max_length=4096, help_text="An engine's path, as listed.")


class EngineDisposedSerializer(serializers.Serializer):
    disposed = serializers.ListField(child=serializers.CharField())


# --- New databases (provisioning; operators): create, follow, rebuild, discard.


class PreparingProgressSerializer(serializers.Serializer):
    """Where a database being prepared stands (provisioning.progress.Status)."""

    label = serializers.CharField()
    state = serializers.ChoiceField(
        choices=[
            "queued",
            "building",
            "failed",
            "interrupted",
            "not_ready",
            "unusable",
            "ready",
        ],
        help_text=(
            "queued (waiting for a worker), building, failed (message says why), interrupted "
            "(its worker stopped), not_ready (a file whose seed_status is not ready), unusable, "
            "ready."
        ),
    )
    done = serializers.IntegerField(help_text="Build steps done (rows read).")
    total = serializers.IntegerField(help_text="Build steps in all (0 while unknown).")
    percent = serializers.IntegerField()
    message = serializers.CharField(allow_blank=True)
    job = serializers.CharField(allow_blank=True)
    updated = serializers.FloatField(allow_null=True, help_text="Unix time of the last report.")
    display_name = serializers.CharField(allow_blank=True)


class NewAdminSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, trim_whitespace=False)


class DatabaseCreateSerializer(serializers.Serializer):
    label = serializers.CharField(
        max_length=40, help_text="Folder name under databases/: letters, digits, '-', '_'."
    )
    display_name = serializers.CharField(
        max_length=200, required=False, allow_blank=True, help_text="Default: the label."
    )
    seed = serializers.CharField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Seed package as name@version (GET the catalog's seeds); null: empty.",
    )
    admin = NewAdminSerializer(
        required=False,
        allow_null=True,
        default=None,
        help_text="The first administrator; its password is stored only as a hash.",
    )
    copy_my_login = serializers.BooleanField(
        default=False,
        help_text="The first administrator is the token's own user (username and password).",
    )
    postgres_like = serializers.CharField(
        max_length=40,
        required=False,
        allow_null=True,
        default=None,
        help_text="Build it on the PostgreSQL server of this catalog entry (its host, port "
        "and user, a new database nw_<label>); null: a SQLite file under databases/<label>/.",
    )

    def validate(self, data):
        if data.get("admin") and data.get("copy_my_login"):
            raise serializers.ValidationError("Give either admin or copy_my_login, not both.")
        return data


class DatabaseJobSerializer(serializers.Serializer):
    label = serializers.CharField()
    job = serializers.CharField(help_text="The queue's job id.")
    state = serializers.CharField()
    progress_url = serializers.CharField(help_text="GET it (operators) to follow the build.")
    page_url = serializers.CharField(help_text="The progress page, for browsers.")


class SeedPackageSerializer(serializers.Serializer):
    ref = serializers.CharField(help_text="name@version, as `seed` takes it.")
    name = serializers.CharField()
    version = serializers.CharField()
    description = serializers.CharField(allow_blank=True)


class DiscardedSerializer(serializers.Serializer):
    label = serializers.CharField()
    moved_to = serializers.CharField(help_text="Where the folder went (never deleted).")


class AttachmentSerializer(serializers.Serializer):
    """An attachment as the API shows it (`file_missing`: its bytes are not in the store)."""

    id = serializers.IntegerField(read_only=True)
    company = serializers.IntegerField(source="company_id", allow_null=True, read_only=True)
    project = serializers.IntegerField(source="project_id", allow_null=True, read_only=True)
    name = serializers.CharField(read_only=True)
    size = serializers.IntegerField(read_only=True)
    content_type = serializers.CharField(read_only=True)
    sha256 = serializers.CharField(read_only=True)
    uploaded_by = serializers.CharField(source="uploaded_by_name", read_only=True)
    uploaded_at = serializers.DateTimeField(read_only=True)


class AttachmentUploadSerializer(serializers.Serializer):
    """A file to attach to one company or one project (multipart/form-data)."""

    file = serializers.FileField(allow_empty_file=True)
    company = serializers.PrimaryKeyRelatedField(
        queryset=Company.objects.all(), required=False, allow_null=True
    )
    project = serializers.PrimaryKeyRelatedField(
        queryset=Project.objects.all(), required=False, allow_null=True
    )

    def validate(self, data):
        if bool(data.get("company")) == bool(data.get("project")):
            raise serializers.ValidationError("Give either `company` or `project` (one of them).")
        return data
