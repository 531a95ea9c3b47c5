"""Flask-WTF forms: every change a page makes goes through one of these (CSRF included)."""

from __future__ import annotations

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, Field, HiddenField, StringField
from wtforms.validators import DataRequired, Length
from wtforms.validators import ValidationError as FieldError

from app import otp


def emailed_code(_form: FlaskForm, field: Field) -> None:
    """Refuse, before any check, what cannot be an emailed code (wrong length, letters):
    it costs none of the code's tries (app.core.codes.require_code_shape)."""
    if field.data and otp.code_digits(field.data) is None:
        # the core's NOT_A_CODE, in the page's language
        raise FieldError(_("A code is 6 digits, like 123 456. Check the email and type it again."))


class EmailForm(FlaskForm):
    email = EmailField(
        "Email", validators=[DataRequired(_l("Enter your email address.")), Length(max=320)]
    )


class CodeForm(FlaskForm):
    code = StringField(
        "Code",
        validators=[
            DataRequired(_l("Enter the 6-digit code from the email.")),
            Length(max=20),
            emailed_code,
        ],
    )
    trust_device = BooleanField("Trust this device")
    #: deny mode: the live session the person chose to end in exchange for this one
    end_session = HiddenField()
    #: an address in several organisations: the tenant the person picked
    tenant = HiddenField()


class SecondFactorForm(FlaskForm):
    """A sign-in's second step: the app's code or a recovery code, in one field."""

    code = StringField(
        "Code",
        validators=[
            DataRequired(_l("Enter the code your app shows, or a recovery code.")),
            Length(max=32),
        ],
    )
    #: deny mode, when the live sessions changed since the emailed code
    end_session = HiddenField()


class EnrolForm(FlaskForm):
    """The authenticator app's first code, which adds it."""

    code = StringField(
        "Code from your app",
        validators=[DataRequired(_l("Enter the 6-digit code your app shows.")), Length(max=20)],
    )


class RenameForm(FlaskForm):
    name = StringField("Device name", validators=[Length(max=60)])


class ActionForm(FlaskForm):
    """A button that changes something: nothing to fill in but the CSRF token."""
