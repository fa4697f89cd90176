"""The customer's consent pages (/consents): thin views over the ``consent`` package."""

from __future__ import annotations

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.datastructures import MultiDict

from consent.engine import CHANNEL_NAMES, CHANNELS
from vault.auth import customer_required
from vault.consents import forms, operations, overview
from vault.consents.models import ConsentReceipt, ConsentRequest
from vault.consents.operations import ConsentChanges, ConsentError
from vault.extensions import db
from vault.models import utcnow
from vault.services import keys

bp = Blueprint("consents", __name__)


def _render(
    status: int = 200,
    *,
    errors: dict[str, str] | None = None,
    values: MultiDict[str, str] | None = None,
    problem: str | None = None,
) -> tuple[str, int]:
    page = overview.build(db.session, current_user.id, utcnow())
    return (
        render_template(
            "consents/index.html",
            page=page,
            errors=errors or {},
            values=values,
            problem=problem,
            orphans=[m for k, m in (errors or {}).items() if k not in page.field_names],
            channels=CHANNELS,
            channel_names=CHANNEL_NAMES,
            timezones=forms.timezones(),
        ),
        status,
    )


@bp.get("/consents")
@customer_required
def index() -> tuple[str, int]:
    return _render()


@bp.post("/consents")
@customer_required
def save() -> Response | tuple[str, int]:
    current = overview.build(db.session, current_user.id, utcnow())
    parsed = forms.parse(request.form, current)
    if not parsed.ok:
        return _render(400, errors=parsed.errors, values=request.form)
    try:
        issued = operations.save_consents(db.session, keys(), current_user.id, parsed.changes)
    except ConsentError as exc:  # refused before it wrote anything (save_consents)
        return _render(400, values=request.form, problem=str(exc))
    if issued:
        flash(
            f"Saved. {len(issued)} change(s), each with a signed receipt.",
            "success",
        )
    else:
        flash("Nothing changed.", "info")
    return redirect(url_for("consents.index"))


def _answer(request_id: str, approve: bool) -> Response:
    try:
        answered, _issued = operations.answer_request(
            db.session, keys(), current_user.id, request_id, approve=approve
        )
    except LookupError:
        abort(404)
    except ConsentError as exc:
        abort(409, str(exc))
    if approve:
        # The page says what the yes really changed: decide() may still refuse a pair.
        return redirect(url_for("consents.show_request", request_id=answered.id))
    flash(f"You declined the request of {answered.vendor.name}. Nothing changed.", "info")
    return redirect(url_for("consents.index"))


def _own_request(request_id: str) -> ConsentRequest:
    row = db.session.get(ConsentRequest, request_id)
    if row is None or row.user_id != current_user.id:
        abort(404)
    return row


@bp.get("/consents/requests/<request_id>")
@customer_required
def show_request(request_id: str) -> str:
    """A request and, once approved, what contact it now allows (and what stays off)."""
    row = _own_request(request_id)
    result = overview.answered(db.session, current_user.id, row, utcnow())
    return render_template(
        "consents/request.html",
        request=row,
        result=result,
        channel_names=CHANNEL_NAMES,
    )


@bp.post("/consents/channels/<channel>/on")
@customer_required
def switch_channel_on(channel: str) -> Response:
    """Switch one channel on for every business (offered where a yes stayed refused
    because the channel is off)."""
    if channel not in CHANNELS:
        abort(404)
    issued = operations.save_consents(
        db.session, keys(), current_user.id, ConsentChanges(channels={channel: True})
    )
    how = CHANNEL_NAMES[channel]
    if issued:
        flash(f"Contact by {how} is on again for every business.", "success")
    else:
        flash(f"Contact by {how} was already on.", "info")
    back = request.form.get("request_id", "")
    row = db.session.get(ConsentRequest, back) if back else None
    if row is not None and row.user_id == current_user.id:
        return redirect(url_for("consents.show_request", request_id=row.id))
    return redirect(url_for("consents.index"))


@bp.post("/consents/requests/<request_id>/approve")
@customer_required
def approve(request_id: str) -> Response:
    return _answer(request_id, approve=True)


@bp.post("/consents/requests/<request_id>/decline")
@customer_required
def decline(request_id: str) -> Response:
    return _answer(request_id, approve=False)


@bp.get("/consents/receipts")
@customer_required
def receipts() -> str:
    rows = operations.list_receipts(db.session, current_user.id)
    decoded = {row.id: operations.decode_receipt(row.jws)[1] for row in rows}
    return render_template("consents/receipts.html", receipts=rows, decoded=decoded)


def _own_receipt(receipt_id: str) -> ConsentReceipt:
    receipt = operations.get_receipt(db.session, current_user.id, receipt_id)
    if receipt is None:
        abort(404)
    return receipt


@bp.get("/consents/receipts/<receipt_id>.jws")
@customer_required
def download_receipt(receipt_id: str) -> Response:
    receipt = _own_receipt(receipt_id)
    return Response(
        receipt.jws,
        mimetype="application/jose",
        headers={
            "Content-Disposition": f'attachment; filename="consent-receipt-{receipt.id}.jws"',
            "Cache-Control": "no-store",
        },
    )


@bp.get("/consents/receipts/<receipt_id>")
@customer_required
def show_receipt(receipt_id: str) -> str:
    receipt = _own_receipt(receipt_id)
    header, payload = operations.decode_receipt(receipt.jws)
    return render_template("consents/receipt.html", receipt=receipt, header=header, payload=payload)
