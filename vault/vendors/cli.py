from __future__ import annotations

import json

import click
from flask.cli import with_appcontext


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
@click.option("--website")
@click.option("--privacy-policy-url")
@click.option("--verified", is_flag=True, help="mark the vendor as checked by an admin")
@with_appcontext
def create(
    name: str,
    redirect_uris: tuple[str, ...],
    public: bool,
    scopes: tuple[str, ...],
    topics: tuple[str, ...],
    id_token_alg: str,
    website: str | None,
    privacy_policy_url: str | None,
    verified: bool,
) -> None:
    """Onboard a vendor with one OAuth client; prints JSON (the secret only this once)."""
    from vault.extensions import db
    from vault.vendors.operations import VendorError, create_client, create_vendor, declare_topic

    try:
        vendor = create_vendor(
            db.session, name, website=website, privacy_policy_url=privacy_policy_url
        )
        vendor.verified = verified
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
