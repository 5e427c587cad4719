"""`python -m push_consumer.keys`: make a VAPID key pair for the push consumer (RFC 8292).

Prints ``VAPID_PRIVATE_KEY=…`` for the push consumer's environment (keep it
secret, and keep it: browsers subscribed with its public key accept pushes
signed by it only) and the public *application server key* that the web
page passes to ``pushManager.subscribe({applicationServerKey})``.
"""

from __future__ import annotations

import typer

from push_consumer.vapid import (
    generate_private_key,
    load_private_key,
    private_key_text,
    public_key_text,
)

app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def keys(
    public_from: str | None = typer.Option(
        None,
        "--public-from",
        metavar="PRIVATE_KEY",
        help="Print the application server key of this existing private key instead.",
    ),
) -> None:
    """Generate a VAPID key pair (or show the public key of an existing one).

    VAPID_PRIVATE_KEY goes into the push consumer's environment (secret; keep
    it: browsers subscribed with its public key accept only pushes it signs).
    VAPID_PUBLIC_KEY is the applicationServerKey a web page passes to
    pushManager.subscribe().
    """
    if public_from is not None:
        try:
            key = load_private_key(public_from)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--public-from") from exc
        typer.echo(f"VAPID_PUBLIC_KEY={public_key_text(key)}")
        return
    key = generate_private_key()
    typer.echo("# push consumer environment (secret):")
    typer.echo(f"VAPID_PRIVATE_KEY={private_key_text(key)}")
    typer.echo("# applicationServerKey for pushManager.subscribe() in the browser (public):")
    typer.echo(f"VAPID_PUBLIC_KEY={public_key_text(key)}")


if __name__ == "__main__":
    app()
