"""Flask-WTF forms: every change a page makes goes through one of these (CSRF included)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, HiddenField, StringField
from wtforms.validators import DataRequired, Length


class EmailForm(FlaskForm):
    email = EmailField(
        "Email", validators=[DataRequired("Enter your email address."), Length(max=320)]
    )


class CodeForm(FlaskForm):
    code = StringField(
        "Code", validators=[DataRequired("Enter the 6-digit code from the email."), Length(max=20)]
    )
    trust_device = BooleanField("Trust this device")
    #: deny mode: the live session the person chose to end in exchange for this one
    end_session = HiddenField()


class RenameForm(FlaskForm):
    name = StringField("Device name", validators=[Length(max=60)])


class ActionForm(FlaskForm):
    """A button that changes something: nothing to fill in but the CSRF token."""
