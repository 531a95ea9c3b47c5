"""Tenant admin: the session policy page (issue 3).

One form for the whole policy, built from :data:`app.core.policy.FIELDS`, so its labels,
help and ranges are the ones the core (and the JSON API) enforce. Durations are entered as
a number and a unit (minutes, hours, days) and stored in seconds. Every field is checked on
its own first, so a person sees every mistake at once, each message naming the field and
its allowed range; then the core applies the whole change or nothing, and writes the audit
event with the old and new values.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from flask_babel import gettext, ngettext
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, RadioField, SelectChoice, SelectField, StringField

from app.core import policy
from app.core.errors import ValidationError
from app.web.access import admin_required
from app.web.authentication import current, origin
from app.web.i18n import said
from app.web.unit_of_work import db, now

bp = Blueprint("admin_policy", __name__, url_prefix="/admin")

#: (form value, label, seconds), largest first
UNITS = (
    ("days", _l("days"), policy.DAY),
    ("hours", _l("hours"), policy.HOUR),
    ("minutes", _l("minutes"), 60),
)
UNIT_SECONDS = {value: seconds for value, _label, seconds in UNITS}
#: how the page groups the settings; any other field of policy.FIELDS goes under "Other"
GROUPS = (
    (_l("Session lifetime"), ("idle_timeout", "absolute_lifetime", "extend_on_activity")),
    (
        _l("Trusted devices"),
        ("trusted_lifetime", "trusted_idle_timeout", "trusted_outlives_absolute"),
    ),
    (_l("Concurrent sessions"), ("max_sessions_per_user", "limit_mode")),
    (_l("Notifications"), ("notify_new_device", "notify_high_alerts")),
    (_l("Security"), ("ip_change", "ua_change", "require_totp_for_admins")),
    (_l("Passkeys"), ("allow_passkeys", "require_passkeys")),
)
LEGENDS = {"limit_mode": _l("At the limit: when someone signs in past the limit")}
CHOICE_HELP = {"limit_mode": _l("Applies only when a limit is set above.")}
LIMIT_MODE_LABELS = {
    "evict_oldest": _l(
        "Sign them in and end their least recently active session "
        "(sessions on trusted devices last)"
    ),
    "deny": _l("Ask them which of their sessions to end, or to cancel"),
    "allow": _l("Allow it"),
    "flag": _l("Raise an alert"),
    "end": _l("End the session"),
}


def field_label(field: policy.Field) -> str:
    """The setting's name in the page's language (the core's label is English)."""
    return gettext(field.label)


@bp.app_template_global()
def policy_range(field: policy.Field) -> str:
    """What the setting allows, in the page's language: the page's words for
    :meth:`app.core.policy.Field.describe_range` (which stays English for the API)."""
    if field.choices:
        return gettext(" or ").join(field.choices)  # the values typed in the API
    if field.kind is bool:
        return gettext("on or off")
    if field.duration:
        return gettext(
            "%(low)s to %(high)s", low=duration_words(field.low), high=duration_words(field.high)
        )
    return gettext("%(low)s to %(high)s (0 means no limit)", low=field.low, high=field.high)


@bp.app_template_global()
def duration_words(seconds: int | None) -> str:
    """A duration as the page's language says it ("30 minutes", "30 Minuten")."""
    if seconds is None:
        return "?"
    if seconds % policy.DAY == 0 and seconds >= policy.DAY:
        return ngettext("%(num)s day", "%(num)s days", seconds // policy.DAY)
    if seconds % policy.HOUR == 0 and seconds >= policy.HOUR:
        return ngettext("%(num)s hour", "%(num)s hours", seconds // policy.HOUR)
    if seconds % 60 == 0 and seconds >= 60:
        return ngettext("%(num)s minute", "%(num)s minutes", seconds // 60)
    return ngettext("%(num)s second", "%(num)s seconds", seconds)


class PolicyForm(FlaskForm):
    """The policy, one form field per setting (two for a duration: amount and unit)."""


for _field in policy.FIELDS:
    if _field.duration:
        setattr(PolicyForm, _field.name, StringField(_field.label))
        setattr(
            PolicyForm,
            f"{_field.name}_unit",
            SelectField(
                f"{_field.label} unit", choices=[SelectChoice(v, label) for v, label, _s in UNITS]
            ),
        )
    elif _field.kind is bool:
        setattr(PolicyForm, _field.name, BooleanField(_field.label))
    elif _field.choices:
        setattr(
            PolicyForm,
            _field.name,
            RadioField(
                _field.label,
                choices=[SelectChoice(c, LIMIT_MODE_LABELS.get(c, c)) for c in _field.choices],
                validate_choice=False,  # the core names the allowed values
            ),
        )
    else:
        setattr(PolicyForm, _field.name, StringField(_field.label))


def split_duration(seconds: int) -> tuple[str, str]:
    """(amount, unit) for showing ``seconds``: the largest unit that divides it evenly,
    else minutes with a decimal part."""
    for unit, _label, size in UNITS:
        if seconds % size == 0:
            return str(seconds // size), unit
    amount = (Decimal(seconds) / 60).quantize(Decimal("0.01")).normalize()
    return f"{amount:f}", "minutes"


def _number(raw: str | None) -> Decimal | None:
    try:
        value = Decimal((raw or "").strip().replace(",", "."))
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def _read(form: PolicyForm) -> tuple[dict[str, Any], dict[str, str]]:
    """The submitted settings in the core's units, and a message per unreadable field."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for field in policy.FIELDS:
        entry = form[field.name]
        if field.duration:
            amount = _number(entry.data)
            unit = UNIT_SECONDS.get(form[f"{field.name}_unit"].data or "")
            if amount is None or unit is None:
                errors[field.name] = gettext(
                    "%(label)s: enter a number of minutes, hours or days (%(range)s).",
                    label=field_label(field),
                    range=policy_range(field),
                )
                continue
            values[field.name] = int((amount * unit).to_integral_value())
        elif field.kind is bool:
            values[field.name] = bool(entry.data)
        elif field.choices:
            values[field.name] = entry.data or ""
        else:
            amount = _number(entry.data)
            if amount is None or amount != amount.to_integral_value():
                errors[field.name] = gettext(
                    "%(label)s must be a whole number, %(range)s.",
                    label=field_label(field),
                    range=policy_range(field),
                )
                continue
            values[field.name] = int(amount)
    for name, value in values.items():
        try:
            policy.check_field(name, value)
        except ValidationError:
            errors[name] = out_of_range(policy.BY_NAME[name])
    return values, errors


def out_of_range(field: policy.Field) -> str:
    """The core's "<label> must be <range>." (app.core.policy) with its label and range
    in the page's language too, not only the sentence around them."""
    return gettext(
        "%(label)s must be %(range)s.", label=field_label(field), range=policy_range(field)
    )


def _fill(form: PolicyForm) -> None:
    tenant = current().tenant
    for field in policy.FIELDS:
        value = getattr(tenant, field.name)
        if field.duration:
            form[field.name].data, form[f"{field.name}_unit"].data = split_duration(value)
        elif field.kind is int:
            form[field.name].data = str(value)
        else:
            form[field.name].data = value


def _groups() -> list[tuple[str, list[policy.Field]]]:
    grouped = [(str(title), [policy.BY_NAME[n] for n in names]) for title, names in GROUPS]
    placed = {name for _title, names in GROUPS for name in names}
    others = [field for field in policy.FIELDS if field.name not in placed]
    return grouped + ([(str(_l("Other settings")), others)] if others else [])


@bp.route("/policy", methods=["GET", "POST"], endpoint="policy")
@admin_required
def edit() -> Response | tuple[str, int] | str:
    """Show the policy; on POST apply it (all or nothing) and come back with a notice."""
    form = PolicyForm()
    errors: dict[str, str] = {}
    if request.method == "POST" and form.validate_on_submit():
        values, errors = _read(form)
        if not errors:
            tenant = current().tenant
            before = policy.as_dict(tenant)
            try:
                policy.update(
                    db(), tenant, values, now=now(), actor_id=current().user.id, origin=origin()
                )
            except ValidationError as problem:  # a rule between fields
                name = policy.BY_API_NAME.get(problem.field or "")
                errors[name.name if name else "form"] = said(problem)
            else:
                changed = before != policy.as_dict(tenant)
                flash(
                    gettext(
                        "Policy saved. Sessions already running follow it from their next request."
                    )
                    if changed
                    else gettext("Nothing changed.")
                )
                return redirect(url_for("admin_policy.policy"))  # type: ignore[return-value]
    elif request.method == "POST":
        errors["form"] = gettext("This form expired. Reload the page and try again.")
    else:
        _fill(form)
    page = render_template(
        "admin/policy.html",
        form=form,
        errors=errors,
        groups=_groups(),
        legends=LEGENDS,
        choice_help=CHOICE_HELP,
        tenant=current().tenant,
    )
    return (page, 422) if errors else page
