"""Attachments in Django's admin: listed, added (through the same service as the pages),
renamed and deleted; the hash, size and type are the server's, never edited."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils.html import format_html

from nukeworks.attachments import service
from nukeworks.attachments.models import Attachment


class AttachmentAddForm(forms.ModelForm):
    upload = forms.FileField(label="File", allow_empty_file=True)

    class Meta:
        model = Attachment
        fields = ("company", "project")

    def clean(self):
        data = super().clean()
        if bool(data.get("company")) == bool(data.get("project")):
            raise ValidationError("Attach the file to a company or to a project (one of them).")
        upload = data.get("upload")
        if upload is not None and upload.size is not None and upload.size > service.max_bytes():
            raise ValidationError(str(service.PayloadTooLarge(service.max_bytes())))
        if upload is not None and not upload.size:
            raise ValidationError(str(service.EmptyPayload()))
        return data


@admin.register(Attachment)
class AttachmentAdmin(admin.ModelAdmin):
    list_display = ("name", "owner_link", "size", "content_type", "uploaded_by_name", "uploaded_at")
    list_filter = ("content_type",)
    search_fields = ("name", "sha256", "company__name", "project__name")
    readonly_fields = (
        "company",
        "project",
        "sha256",
        "size",
        "content_type",
        "uploaded_by_name",
        "uploaded_at",
        "download",
    )
    fields = (*readonly_fields[:2], "name", *readonly_fields[2:])
    autocomplete_fields = ()

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = AttachmentAddForm
            kwargs["fields"] = ("company", "project", "upload")
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        return ("company", "project", "upload") if obj is None else self.fields

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.readonly_fields

    @admin.display(description="Belongs to")
    def owner_link(self, obj: Attachment) -> str:
        return str(obj.owner)

    @admin.display(description="Download")
    def download(self, obj: Attachment) -> str:
        return format_html(
            '<a href="{}">{}</a>', reverse("attachments:download", args=[obj.pk]), obj.name
        )

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        owner = form.cleaned_data["company"] or form.cleaned_data["project"]
        created = service.add(owner, form.cleaned_data["upload"], request=request)
        for field in Attachment._meta.concrete_fields:
            setattr(obj, field.attname, getattr(created, field.attname))

    def delete_model(self, request, obj):
        service.delete(obj, request=request)

    def delete_queryset(self, request, queryset):
        for attachment in queryset:
            service.delete(attachment, request=request)
