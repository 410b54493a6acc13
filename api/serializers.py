"""Serializers of the domain each database holds, and of the API's own answers."""

from __future__ import annotations

from rest_framework import serializers

from nukeworks.companies.models import Company, Project


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


class CatalogEntrySerializer(serializers.Serializer):
    label = serializers.CharField()
    display_name = serializers.CharField()
    size = serializers.IntegerField(allow_null=True)
    modified = serializers.DateTimeField(allow_null=True)
    state = serializers.ChoiceField(
        choices=["up_to_date", "needs_migration", "newer", "invalid"],
    )
    detail = serializers.CharField(allow_blank=True)


class ErrorBodySerializer(serializers.Serializer):
    """The one error shape (documented in the schema for every error status)."""

    class _Error(serializers.Serializer):
        code = serializers.CharField()
        message = serializers.CharField()
        detail = serializers.JSONField()

    error = _Error()
