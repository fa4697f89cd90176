from __future__ import annotations

import time
from urllib.parse import urlsplit

import segno
from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_required, logout_user
from werkzeug.wrappers import Response

from connectors.base import Delivery
from vault import mail, transactions
from vault.accounts import confirmations, guards, links, operations, sessions
from vault.accounts.forms import (
    ChangePasswordForm,
    ChoosePasswordForm,
    DeleteAccountForm,
    EnableTotpForm,
    LoginForm,
    PasswordConfirmForm,
    SecondFactorForm,
    SignupForm,
)
from vault.accounts.models import ConfirmationPurpose, User
from vault.crypto.keyed_hash import blind_index
from vault.extensions import db, limiter, login_manager
from vault.logs import audit
from vault.models import new_id, utcnow
from vault.profile.operations import EmailInUse, load_profile
from vault.services import keys, passwords

bp = Blueprint("accounts", __name__)
sessions.register(bp)

LOGIN_FAILED = "The e-mail or password is not correct."
PENDING_2FA_SECONDS = 300

login_manager.login_view = "accounts.login"
login_manager.login_message = "Log in to continue."
# Effective because sessions are not permanent (vault.accounts.sessions): a session cookie
# used from another address or browser than the one that logged in is logged out.
login_manager.session_protection = "strong"


@login_manager.user_loader
def load_user(session_id: str) -> User | None:
    user_id, _, token = session_id.partition(":")
    user = db.session.get(User, user_id)
    if user is None or not user.is_active or user.session_token != token:
        return None
    return user


def _login_limit() -> str:
    return current_app.config["VAULT_LOGIN_RATE_LIMIT"]


def _signup_limit() -> str:
    return current_app.config["VAULT_SIGNUP_RATE_LIMIT"]


def _safe_next(target: str | None) -> str:
    """Only same-site paths: anything with a scheme, host or a leading // is an open redirect.

    Browsers drop tabs and newlines, read \\ as / and skip any run of slashes after the
    first two, so ``///evil.example`` or ``/\\t/evil.example`` lead off-site as well.
    """
    if (
        target
        and target.startswith("/")
        and not target.startswith("//")
        and "\\" not in target
        and not any(ord(char) < 0x21 or ord(char) == 0x7F for char in target)
    ):
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc:
            return target
    return url_for("web.dashboard")


# --- sign-up (double opt-in) ------------------------------------------------------------------


@bp.route("/signup", methods=["GET", "POST"])
@limiter.limit(_signup_limit, methods=["POST"])
def signup() -> str | Response | tuple[str, int]:
    """The same answer whether or not the address has an account: a link for a free one, a
    note to the owner of a taken one, and "check your inbox" on the page either way."""
    if current_user.is_authenticated:
        return redirect(url_for("web.dashboard"))
    form = SignupForm()
    if form.validate_on_submit():
        email = form.email.data
        if not links.mail_allowed(email):
            form.email.errors.append(links.MAIL_LIMITED)
            return render_template("accounts/signup.html", form=form), 429
        link = confirmations.request_signup(
            db.session, keys(), email, lifetime=links.lifetime(), now=utcnow()
        )
        # The mail names a row that must exist first: sent once the link is committed,
        # and the page says whether it went out.
        return transactions.respond_after_commit(
            lambda: links.check_inbox(email, _mail_signup_link(email, link))
        )
    return render_template("accounts/signup.html", form=form), 400 if form.errors else 200


def _mail_signup_link(email: str, link: confirmations.LinkRequest) -> Delivery:
    if link.address_taken:
        return mail.send("signup_taken", email, login_url=mail.external_url("accounts.login"))
    return mail.send(
        "signup_confirm",
        email,
        link=mail.external_url("accounts.confirm_signup", token=link.token),
        hours=links.hours(),
    )


def _invalid_link(message: str) -> tuple[str, int]:
    return render_template("accounts/link_invalid.html", message=message), 404


@bp.route("/signup/confirm/<token>", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def confirm_signup(token: str) -> str | Response | tuple[str, int]:
    """Following the link shows a form; the account exists once a password is chosen."""
    if current_user.is_authenticated:
        flash("You are logged in. Log out first to create another vault.", "info")
        return redirect(url_for("web.dashboard"))
    try:
        pending = confirmations.open_link(db.session, ConfirmationPurpose.SIGNUP, token, utcnow())
    except confirmations.InvalidLink as exc:
        return _invalid_link(str(exc))
    form = ChoosePasswordForm()
    if form.validate_on_submit():
        try:
            user = confirmations.confirm_signup(
                db.session, keys(), passwords(), token, form.password.data
            )
        except confirmations.InvalidLink as exc:
            return _invalid_link(str(exc))
        except EmailInUse:
            return render_template(
                "accounts/link_invalid.html",
                message="This address has a vault already. Log in instead.",
            ), 409
        except operations.WeakPassword as exc:
            form.password.errors.append(str(exc))
        else:
            audit("signup_confirmed", user_id=user.id)
            sessions.start_session(user)
            flash("Welcome to your vault. Fill in your profile whenever you like.", "success")
            return redirect(url_for("profile.edit"))
    return render_template(
        "accounts/confirm_signup.html", form=form, email=pending.email
    ), 400 if form.errors else 200


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def login() -> str | Response | tuple[str, int]:
    if current_user.is_authenticated:
        return redirect(url_for("web.dashboard"))
    form = LoginForm()
    if form.validate_on_submit():
        subject = guards.password_subject(
            blind_index(keys().secret("blind_index"), form.email.data)
        )
        wait = guards.claim(subject)
        if wait is not None:
            form.form_errors.append(wait.message)
            return guards.too_many(render_template("accounts/login.html", form=form), wait)
        user = operations.authenticate(
            db.session, keys(), passwords(), form.email.data, form.password.data
        )
        if user is None:
            guards.guessed_wrong(subject, "password")
            form.form_errors.append(LOGIN_FAILED)
        else:
            guards.guessed_right(subject)
            if user.totp_enabled:
                session.clear()
                session["pending_2fa"] = {
                    "user": user.get_id(),
                    "at": time.time(),
                    "next": _safe_next(request.args.get("next")),
                }
                return redirect(url_for("accounts.second_factor"))
            sessions.start_session(user)
            target = _safe_next(request.args.get("next"))
            sessions.proved_presence_for(target)
            return redirect(target)
    status = 401 if form.form_errors else 400 if form.errors else 200
    return render_template("accounts/login.html", form=form), status


@bp.route("/login/verify", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def second_factor() -> str | Response | tuple[str, int]:
    pending = session.get("pending_2fa")
    if not pending or time.time() - pending.get("at", 0) > PENDING_2FA_SECONDS:
        session.pop("pending_2fa", None)
        flash("Log in again to continue.", "info")
        return redirect(url_for("accounts.login"))
    user = load_user(pending["user"])
    if user is None:
        session.clear()
        return redirect(url_for("accounts.login"))
    form = SecondFactorForm()
    if form.validate_on_submit():
        subject = guards.second_factor_subject(user)
        wait = guards.claim(subject)
        if wait is not None:
            form.code.errors.append(wait.message)
            return guards.too_many(render_template("accounts/second_factor.html", form=form), wait)
        if operations.verify_second_factor(db.session, keys(), user, form.code.data):
            guards.guessed_right(subject)
            target = pending.get("next")
            sessions.start_session(user)
            target = _safe_next(target)
            sessions.proved_presence_for(target)
            return redirect(target)
        guards.guessed_wrong(subject, "second_factor", user_id=user.id)
        form.code.errors.append("That code is not valid. Try the current code or a recovery code.")
    return render_template("accounts/second_factor.html", form=form), 401 if form.errors else 200


@bp.post("/logout")
def logout() -> Response:
    if current_user.is_authenticated:
        # Session cookies are signed, not stored: a copy taken before logging out would
        # stay valid. Rotating the token ends this session (and the user's others) for good.
        user = current_user._get_current_object()
        user.session_token = new_id()
    logout_user()
    session.clear()
    flash("You are logged out.", "info")
    return redirect(url_for("accounts.login"))


@bp.route("/security", methods=["GET", "POST"])
@login_required
@limiter.limit(_login_limit, methods=["POST"])  # each checks the password
def security() -> str | Response | tuple[str, int]:
    form = ChangePasswordForm()
    if form.validate_on_submit():
        subject = guards.own_password_subject()
        wait = guards.claim(subject)
        if wait is not None:
            form.current_password.errors.append(wait.message)
            return guards.too_many(
                render_template(
                    "accounts/security.html", form=form, disable_form=PasswordConfirmForm()
                ),
                wait,
            )
        try:
            operations.change_password(
                db.session,
                passwords(),
                current_user,
                form.current_password.data,
                form.new_password.data,
            )
        except operations.WeakPassword as exc:
            form.new_password.errors.append(str(exc))
        except operations.AccountError as exc:
            guards.guessed_wrong(subject, "password_confirm", user_id=current_user.id)
            form.current_password.errors.append(str(exc))
        else:
            guards.guessed_right(subject)
            audit("password_changed", user_id=current_user.id)
            sessions.start_session(current_user._get_current_object())
            flash("Your password was changed. Other sessions were logged out.", "success")
            return redirect(url_for("accounts.security"))
    return render_template(
        "accounts/security.html", form=form, disable_form=PasswordConfirmForm()
    ), 400 if form.errors else 200


@bp.route("/security/2fa", methods=["GET", "POST"])
@login_required
def enable_2fa() -> str | Response | tuple[str, int]:
    if current_user.totp_enabled:
        return redirect(url_for("accounts.security"))
    secret = session.get("totp_setup") or operations.new_totp_secret()
    session["totp_setup"] = secret
    form = EnableTotpForm()
    if form.validate_on_submit():
        try:
            codes = operations.enable_totp(db.session, keys(), current_user, secret, form.code.data)
        except operations.AccountError as exc:
            form.code.errors.append(str(exc))
        else:
            audit("second_factor_enabled", user_id=current_user.id)
            user = current_user._get_current_object()
            sessions.start_session(user)
            return render_template("accounts/recovery_codes.html", codes=codes)
    email = load_profile(db.session, keys(), current_user.id).get("email", "")
    uri = operations.totp_provisioning_uri(secret, email)
    qr_svg = segno.make(uri, error="m").svg_inline(scale=4, dark="#1b2a3a")
    return render_template(
        "accounts/enable_2fa.html", form=form, secret=secret, uri=uri, qr_svg=qr_svg
    ), 400 if form.errors else 200


@bp.post("/security/2fa/disable")
@login_required
@limiter.limit(_login_limit, methods=["POST"])  # each checks the password
def disable_2fa() -> str | Response | tuple[str, int]:
    form = PasswordConfirmForm()
    if form.validate_on_submit():
        subject = guards.own_password_subject()
        wait = guards.claim(subject)
        if wait is not None:
            form.password.errors.append(wait.message)
            return guards.too_many(
                render_template(
                    "accounts/security.html",
                    form=ChangePasswordForm(formdata=None),
                    disable_form=form,
                ),
                wait,
            )
        try:
            operations.disable_totp(db.session, passwords(), current_user, form.password.data)
        except operations.AccountError as exc:
            guards.guessed_wrong(subject, "password_confirm", user_id=current_user.id)
            form.password.errors.append(str(exc))
        else:
            guards.guessed_right(subject)
            audit("second_factor_disabled", user_id=current_user.id)
            sessions.start_session(current_user._get_current_object())
            flash("Two-step verification is off.", "info")
            return redirect(url_for("accounts.security"))
    return render_template(
        "accounts/security.html", form=ChangePasswordForm(formdata=None), disable_form=form
    ), 400


@bp.route("/account/delete", methods=["GET", "POST"])
@login_required
@limiter.limit(_login_limit, methods=["POST"])  # each checks the password
def delete_account() -> str | Response | tuple[str, int]:
    form = DeleteAccountForm()
    if form.validate_on_submit():
        subject = guards.own_password_subject()
        wait = guards.claim(subject)
        if wait is not None:
            form.password.errors.append(wait.message)
            return guards.too_many(render_template("accounts/delete.html", form=form), wait)
        try:
            closed = operations.delete_account(
                db.session, passwords(), current_user, form.password.data
            )
        except operations.AccountError as exc:
            guards.guessed_wrong(subject, "password_confirm", user_id=current_user.id)
            form.password.errors.append(str(exc))
        else:
            guards.guessed_right(subject)
            audit("account_closed", user_id=closed.user_id)
            logout_user()
            session.clear()
            return render_template("accounts/deleted.html")
    return render_template("accounts/delete.html", form=form), 400 if form.errors else 200
