from __future__ import annotations

import getpass
import json
from typing import TYPE_CHECKING

import click
from flask.cli import with_appcontext

if TYPE_CHECKING:
    from vault.vendors.operations import VendorIdentity


def _operator() -> str:
    """Who runs the command, for ``verified_by`` when ``--by`` is not given."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name in this environment
        return "cli"


def _check_urls(urls: dict[str, str | None]) -> None:
    """Refuse a bad vendor URL as a usage error (exit 2, the usage line), before anything
    is written."""
    from vault.vendors.urls import UnsafeURL, loopback_http_allowed, optional_vendor_url

    for option, value in urls.items():
        try:
            optional_vendor_url(value, label=option, loopback_http=loopback_http_allowed())
        except UnsafeURL as exc:
            raise click.BadParameter(
                str(exc), ctx=click.get_current_context(), param_hint=option
            ) from exc


@click.group("vendors", help="Businesses and their OAuth clients.")
def vendors() -> None:
    pass


@vendors.command("create")
@click.option("--name", required=True)
@click.option(
    "--redirect-uri",
    "redirect_uris",
    multiple=True,
    required=True,
    help="exact redirect URI (repeatable); https, or http on loopback",
)
@click.option("--public", is_flag=True, help="a public client (no secret; PKCE only)")
@click.option("--scope", "scopes", multiple=True, help="allowed scope (repeatable)")
@click.option(
    "--topic",
    "topics",
    multiple=True,
    metavar="NAME:CATEGORY",
    help="contact topic with purpose category (service, marketing, research, other)",
)
@click.option(
    "--id-token-alg",
    type=click.Choice(["ES256", "RS256"]),
    default="ES256",
    show_default=True,
    help="id_token signing algorithm for this client",
)
@click.option("--website", help="https URL of the business")
@click.option("--logo-url", help="https URL of its logo")
@click.option("--privacy-policy-url", help="https URL of its privacy policy")
@click.option("--verified", is_flag=True, help="mark the vendor as checked by an admin")
@click.option("--by", "verified_by", help="who verified it (with --verified; default: you)")
@with_appcontext
def create(
    name: str,
    redirect_uris: tuple[str, ...],
    public: bool,
    scopes: tuple[str, ...],
    topics: tuple[str, ...],
    id_token_alg: str,
    website: str | None,
    logo_url: str | None,
    privacy_policy_url: str | None,
    verified: bool,
    verified_by: str | None,
) -> None:
    """Onboard a vendor with one OAuth client; prints JSON (the secret only this once).

    URLs must be https (http only on loopback in development and testing)."""
    from vault.extensions import db
    from vault.logs import audit
    from vault.vendors.operations import (
        VendorError,
        VendorIdentity,
        create_client,
        create_vendor,
        declare_topic,
        verify_vendor,
    )
    from vault.vendors.urls import loopback_http_allowed

    _check_urls(
        {"--website": website, "--logo-url": logo_url, "--privacy-policy-url": privacy_policy_url}
    )
    try:
        vendor = create_vendor(
            db.session,
            name,
            website=website,
            logo_url=logo_url,
            privacy_policy_url=privacy_policy_url,
            loopback_http=loopback_http_allowed(),
        )
        if verified:
            verify_vendor(
                db.session,
                vendor.id,
                seen=VendorIdentity.of(vendor),
                by=verified_by or _operator(),
            )
        for spec in topics:
            topic_name, sep, category = spec.rpartition(":")
            if not sep:
                raise VendorError(f"--topic {spec!r} must be NAME:CATEGORY")
            declare_topic(db.session, vendor, topic_name, category)
        new = create_client(
            db.session,
            vendor,
            redirect_uris=list(redirect_uris),
            public=public,
            scopes=list(scopes) or None,
            id_token_alg=id_token_alg,
        )
        db.session.commit()
    except VendorError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from exc
    if verified:
        audit("vendor_verified", vendor_id=vendor.id)
    result = {"vendor_id": vendor.id, "client_id": new.client.client_id}
    if new.client_secret is not None:
        result["client_secret"] = new.client_secret
    click.echo(json.dumps(result))


@vendors.command("add-member")
@click.option("--vendor-id", required=True)
@click.option("--email", required=True)
@click.option(
    "--password-stdin", is_flag=True, help="read the password from the first line of stdin"
)
@with_appcontext
def add_member(vendor_id: str, email: str, password_stdin: bool) -> None:
    """Create a business-portal account for a vendor (password never from argv)."""
    from vault.accounts.models import Role
    from vault.accounts.operations import WeakPassword, create_account
    from vault.cli import read_password
    from vault.extensions import db
    from vault.profile.operations import EmailInUse
    from vault.services import keys, passwords
    from vault.vendors.models import Vendor, VendorMember

    if db.session.get(Vendor, vendor_id) is None:
        raise click.ClickException(f"no vendor with id {vendor_id}")
    password = read_password(password_stdin)
    try:
        user = create_account(
            db.session,
            keys(),
            passwords(),
            email=email,
            password=password,
            role=Role.VENDOR_MEMBER,
        )
        db.session.add(VendorMember(user_id=user.id, vendor_id=vendor_id))
        db.session.commit()
    except (WeakPassword, EmailInUse) as exc:
        db.session.rollback()
        raise click.ClickException(f"refused: {exc or 'e-mail already in use'}") from exc
    click.echo(json.dumps({"user_id": user.id, "vendor_id": vendor_id}))


def _identity_lines(identity: VendorIdentity) -> str:
    return "\n".join(
        f"  {label}: {value or '-'}"
        for label, value in (
            ("name", identity.name),
            ("website", identity.website),
            ("logo", identity.logo_url),
            ("privacy policy", identity.privacy_policy_url),
        )
    )


@vendors.command("verify")
@click.argument("vendor_id")
@click.option("--by", "verified_by", help="who checked the business (default: you)")
@click.option("--yes", is_flag=True, help="do not ask; verify what is shown")
@with_appcontext
def verify(vendor_id: str, verified_by: str | None, yes: bool) -> None:
    """Give a vendor the verified badge after checking who it is.

    Shows the name, website, logo and privacy policy being vouched for. If the business
    changes any of them before this commits, nothing is verified; any later change takes
    the badge away again until the next verify."""
    from vault.extensions import db
    from vault.logs import audit
    from vault.vendors.models import Vendor
    from vault.vendors.operations import VendorError, VendorIdentity, verify_vendor

    vendor = db.session.get(Vendor, vendor_id)
    if vendor is None:
        raise click.ClickException(f"no vendor with id {vendor_id}")
    seen = VendorIdentity.of(vendor)
    db.session.rollback()  # the admin may take a while: hold no transaction meanwhile
    click.echo(f"Verifying vendor {vendor_id}:\n{_identity_lines(seen)}", err=True)
    if not yes:
        click.confirm("Is this the business you checked?", abort=True, err=True)
    try:
        vendor = verify_vendor(db.session, vendor_id, seen=seen, by=verified_by or _operator())
        db.session.commit()
    except VendorError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from exc
    audit("vendor_verified", vendor_id=vendor.id)
    click.echo(
        json.dumps(
            {
                "vendor_id": vendor.id,
                "verified": True,
                "verified_at": vendor.verified_at.isoformat() if vendor.verified_at else None,
                "verified_by": vendor.verified_by,
            }
        )
    )


@vendors.command("unverify")
@click.argument("vendor_id")
@with_appcontext
def unverify(vendor_id: str) -> None:
    """Take the verified badge away from a vendor."""
    from vault.extensions import db
    from vault.logs import audit
    from vault.vendors.operations import VendorError, unverify_vendor

    try:
        vendor = unverify_vendor(db.session, vendor_id)
        db.session.commit()
    except VendorError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from exc
    audit("vendor_unverified", vendor_id=vendor.id)
    click.echo(json.dumps({"vendor_id": vendor.id, "verified": False}))
