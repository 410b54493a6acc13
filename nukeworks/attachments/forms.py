from django import forms


class UploadForm(forms.Form):
    """One file to attach (its size, name and type are checked by the service)."""

    file = forms.FileField(
        label="Attach a file",
        allow_empty_file=True,  # the service refuses it with its own message
        help_text="Stored beside the database; identical files are stored once.",
    )
