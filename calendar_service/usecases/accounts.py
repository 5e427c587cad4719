"""Accounts: registering, signing in, the admin role, and the caller's own row."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection
from typing import Literal

from sqlalchemy.engine import RowMapping

from calendar_service.db.uow import UnitOfWork
from calendar_service.errors import AccountGone, EmailTaken, NotFound, WrongCredentials
from calendar_service.security import PasswordHashing

log = logging.getLogger(__name__)

Role = Literal["admin", "user"]


async def account_of(uow: UnitOfWork, user_id: uuid.UUID) -> RowMapping:
    """The caller's user row; a valid token whose account is gone is refused."""
    user = await uow.users.by_id(user_id)
    if user is None:
        raise AccountGone()
    return user


async def register(
    uow: UnitOfWork,
    passwords: PasswordHashing,
    *,
    email: str,
    name: str,
    password: str,
    admin_emails: Collection[str],
) -> RowMapping:
    """A new user; an address listed in ``admin_emails`` gets the admin role.

    Settings refuse ``admin_emails`` in prod: there the role is granted by an
    operator (``change_role``), as registering proves no one owns the address.
    """
    email = email.lower()
    role = "admin" if email in admin_emails else "user"
    user = await uow.users.add(
        email=email, name=name, password_hash=await passwords.hash(password), role=role
    )
    if user is None:
        raise EmailTaken()
    await uow.commit()
    return user


async def sign_in(
    uow: UnitOfWork, passwords: PasswordHashing, *, email: str, password: str
) -> RowMapping:
    """The user whose password this is; an unknown email costs the same hash as a known one."""
    email = email.strip().lower()
    # PostgreSQL refuses NUL in text: such an address cannot be anyone's
    user = None if "\x00" in email else await uow.users.by_email(email)
    known = await passwords.verify(user["password_hash"] if user else None, password)
    if not known or user is None:
        raise WrongCredentials()
    return user


async def change_role(uow: UnitOfWork, *, email: str, role: Role, actor: str) -> RowMapping:
    """Give the account of ``email`` the role ``role``; ``NotFound`` for an unknown address.

    Admin requests read the role from this row, so a revoke takes effect at
    once even for tokens issued before it.
    """
    email = email.strip().lower()
    before = await uow.users.by_email(email)
    if before is None:
        raise NotFound(f"account {email!r}")
    user = await uow.users.set_role(before["id"], role)
    await record_role_change(
        uow, user_id=before["id"], email=email, old=before["role"], new=role, actor=actor
    )
    await uow.commit()
    return user


async def record_role_change(
    uow: UnitOfWork, *, user_id: uuid.UUID, email: str, old: str, new: str, actor: str
) -> None:
    """The trail of a role change, in the same transaction: the audit log and a log line."""
    await uow.audit.record(
        actor=actor,
        action="grant admin" if new == "admin" else "revoke admin",
        target=email,
        detail={"user_id": str(user_id), "old_role": old, "new_role": new},
    )
    log.info(
        "role of %s changed from %s to %s",
        email,
        old,
        new,
        extra={"user_id": str(user_id), "old_role": old, "new_role": new, "actor": actor},
    )
