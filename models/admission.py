"""Intake's admission decision, pure: admit an intent, refuse it with a reason code, or answer it
as a duplicate of what its `signal_id` already holds.

`services.intake` runs one submission as load → `decide` → save → publish; everything here is a
function of its arguments (no database, no Redis, no clock), so every rule is unit-tested in
`tests/unit/models/test_admission.py` without a store:

1. `screen(payload, today=...)`: decode and validate (`models.intent`), giving the `Screened`
   submission: an `Intent` or the `Reject` saying why not. `today` is the caller's date (UTC);
   option expiry and GTD dates are judged against it.
2. `decide(screened, prior=..., guard=..., stored_form=...)`, from what the store said:
   - `prior` (the row already stored under the `signal_id`, if any) wins over everything: the
     same submission again gets the first outcome, and a different payload under a used
     `signal_id` is refused with DUPLICATE_SIGNAL while the first submission stands
     (`Duplicate`). Either way nothing new is stored.
   - otherwise a `Reject` from screening is refused as is (`Refuse`), recorded under its
     `signal_id` when it names a usable one, so its resubmission gets the same answer;
   - otherwise the strategy's concurrency guard (`Guard`, read under the strategy's lock)
     refuses with CONCURRENCY_LIMIT when `active >= limit` (`Refuse`, the valid intent's columns
     kept), or the intent is admitted (`Admit`).
3. The decision's `outcome(...)` is the answer the task returns; `AdmissionOutcome.published` is
   the entry for `signals.exec.reject` (every refused submission publishes exactly one).

The only time the decision itself uses is the prior's `received_at`: a resubmission is judged as
of the first submission's day, so an option that expired since is still "the same intent".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from models.intent import (
    DEFAULT_CHECKS,
    Check,
    Intent,
    IntentStatus,
    parse_payload,
    signal_id_of,
    validate_intent,
)
from models.limits import Limits
from models.rejects import Reject, RejectReason
from models.risk import MarketFacts, check_intent

__all__ = [
    "AdmissionOutcome",
    "Admit",
    "Decision",
    "Duplicate",
    "Guard",
    "Refuse",
    "Screened",
    "StoredSubmission",
    "decide",
    "screen",
    "unscreenable",
]


@dataclass(frozen=True, slots=True)
class Screened:
    """One submission decoded and validated: what the admission decision starts from.

    `data` is the decoded payload (Decimals for numbers), or the payload as given when it could
    not be decoded; `verdict` is the admitted `Intent` or the `Reject` saying why not.
    """

    data: object
    verdict: Intent | Reject

    @property
    def signal_id(self) -> str:
        """The usable `signal_id` the submission named, "" when it named none."""
        return self.verdict.signal_id

    @property
    def keyed(self) -> bool:
        """Whether the submission can be looked up and stored under its `signal_id`.

        Only a JSON object with a usable `signal_id` can: anything else has no key to make a
        resubmission idempotent on, so it is answered (and its reject published) but not stored.
        """
        return isinstance(self.data, Mapping) and bool(self.signal_id)


@dataclass(frozen=True, slots=True)
class StoredSubmission:
    """What the intents table holds for a `signal_id`: the first submission and its outcome.

    `status` is text because later stages (orders) move an intent on (WORKING, DONE, ...), and a
    resubmission answers with wherever it is now. `payload` is the normalized intent when it was
    admitted, else the refused submission in the form the table keeps it (`stored_form`).
    """

    id: int
    signal_id: str
    status: str
    reject_reason: RejectReason | None
    reject_message: str | None
    payload: Any
    received_at: datetime


@dataclass(frozen=True, slots=True)
class Guard:
    """The strategy's concurrency guard as read under its lock: active intents and the limit."""

    strategy: str
    active: int
    limit: int

    @property
    def full(self) -> bool:
        """True when admitting one more would exceed the limit."""
        return self.active >= self.limit

    def reject(self, signal_id: str) -> Reject:
        """The CONCURRENCY_LIMIT refusal of `signal_id` by this guard."""
        return Reject(
            RejectReason.CONCURRENCY_LIMIT,
            f"{self.strategy} already has {self.active} active intents (limit {self.limit})",
            signal_id,
        )


@dataclass(frozen=True, slots=True)
class AdmissionOutcome:
    """The answer to one submission (what `tasks.intake.submit_intent` returns, as a dict)."""

    status: str
    signal_id: str
    intent_id: int | None = None
    reason: RejectReason | None = None
    message: str | None = None
    duplicate: bool = False
    # The offending field of a refused payload, when there is one (`params.trail_percent`).
    field: str | None = None

    @property
    def refused(self) -> bool:
        return self.status == IntentStatus.REJECTED.value

    @property
    def published(self) -> Reject | None:
        """The `signals.exec.reject` entry this answer publishes: one per refused submission."""
        if not self.refused:
            return None
        if self.reason is None:
            raise ValueError(f"refused outcome for {self.signal_id!r} carries no reason code")
        return Reject(self.reason, self.message or "", self.signal_id, self.field)

    def as_dict(self) -> dict[str, Any]:
        """JSON primitives: the task's result and the CLI's `--inline` line (keys are stable)."""
        return {
            "status": self.status,
            "signal_id": self.signal_id,
            "intent_id": self.intent_id,
            "reason": None if self.reason is None else self.reason.value,
            "message": self.message,
            "duplicate": self.duplicate,
        }


def _refused(reject: Reject, intent_id: int | None, *, duplicate: bool = False) -> AdmissionOutcome:
    return AdmissionOutcome(
        IntentStatus.REJECTED.value,
        reject.signal_id,
        intent_id=intent_id,
        reason=reject.reason,
        message=reject.message,
        duplicate=duplicate,
        field=reject.field,
    )


@dataclass(frozen=True, slots=True)
class Admit:
    """Store the intent as VALIDATED. `instrument_text` is the instrument as submitted (the
    intent itself keeps the canonical form), so operators find the row by what they sent."""

    intent: Intent
    instrument_text: str

    def outcome(self, intent_id: int) -> AdmissionOutcome:
        """The answer once the intent is stored as row `intent_id`."""
        return AdmissionOutcome(
            IntentStatus.VALIDATED.value, self.intent.signal_id, intent_id=intent_id
        )


@dataclass(frozen=True, slots=True)
class Refuse:
    """Refuse the submission with `reject`'s reason code.

    `record` is the submission to store as REJECTED under its `signal_id` (so its resubmission
    gets the same answer), None when it named none usable. `intent` is the valid intent a guard
    refused: the row keeps its typed columns.
    """

    reject: Reject
    record: Mapping[str, object] | None
    intent: Intent | None = None

    def outcome(self, intent_id: int | None) -> AdmissionOutcome:
        """The answer once the refusal is stored as row `intent_id` (None: not stored)."""
        return _refused(self.reject, intent_id)


@dataclass(frozen=True, slots=True)
class Duplicate:
    """The `signal_id` is already stored: nothing new is saved, the first submission stands.

    `conflict` is the DUPLICATE_SIGNAL refusal when this submission is not the one stored;
    None when it is the same one again, which gets the first outcome.
    """

    prior: StoredSubmission
    conflict: Reject | None

    def outcome(self) -> AdmissionOutcome:
        if self.conflict is not None:
            return _refused(self.conflict, self.prior.id, duplicate=True)
        prior = self.prior
        return AdmissionOutcome(
            prior.status,
            prior.signal_id,
            intent_id=prior.id,
            reason=prior.reject_reason,
            message=prior.reject_message,
            duplicate=True,
        )


Decision = Admit | Refuse | Duplicate


def screen(payload: object, *, today: date, checks: Sequence[Check] = DEFAULT_CHECKS) -> Screened:
    """Decode and validate one submission (a mapping, or JSON text or bytes); never raises by
    design (`validate_intent` is total and property-tested)."""
    data = parse_payload(payload)
    if isinstance(data, Reject):
        return Screened(payload, data)
    return Screened(data, validate_intent(data, today=today, checks=checks))


def unscreenable(payload: object, error_name: str) -> Screened:
    """The submission refused with INVALID_VALUE because validating it raised `error_name`.

    For a bug slipping past `screen`'s totality: the submission is still answered (and recorded
    under its signal_id) instead of looping through redeliveries.
    """
    data = parse_payload(payload)
    if isinstance(data, Reject):
        return Screened(payload, data)
    reject = Reject(
        RejectReason.INVALID_VALUE,
        f"payload could not be validated ({error_name})",
        signal_id_of(data),
    )
    return Screened(data, reject)


def _same_submission(prior: StoredSubmission, screened: Screened, stored_form: object) -> bool:
    """Whether `screened` is the submission that produced `prior` (and so gets its outcome)."""
    if prior.status == IntentStatus.REJECTED.value:
        # A refused submission is kept as submitted (JSON-safe): compare it in that form.
        return bool(stored_form == prior.payload)
    # Judge the resubmission as of the first one's day: an option that expired since then is
    # still the same intent.
    again = validate_intent(screened.data, today=prior.received_at.date())
    return isinstance(again, Intent) and again.to_payload() == prior.payload


def _duplicate(prior: StoredSubmission, screened: Screened, stored_form: object) -> Duplicate:
    if _same_submission(prior, screened, stored_form):
        return Duplicate(prior, None)
    conflict = Reject(
        RejectReason.DUPLICATE_SIGNAL,
        f"signal_id already used by intent {prior.id} ({prior.status}) with a different "
        "payload; the first submission stands",
        prior.signal_id,
        "signal_id",
    )
    return Duplicate(prior, conflict)


def decide(
    screened: Screened,
    *,
    prior: StoredSubmission | None,
    guard: Guard | None,
    stored_form: object = None,
    limits: Limits | None = None,
    market: MarketFacts | None = None,
) -> Decision:
    """Admit, refuse or answer as a duplicate (see the module docstring for the order of rules).

    `prior` is the row stored under the submission's `signal_id` (None: none, or the submission
    is not `keyed`); `guard` the strategy's concurrency guard, needed when an intent may be
    admitted; `stored_form` the submission as the intents table keeps a refused one
    (`store.intents.json_safe`), compared with a refused prior's payload. With `limits`, an
    intent the guard lets through still passes the pre-trade gates (`models.risk.check_intent`,
    on what `market` tells of the instrument) or is refused with the gate's code and numbers.
    """
    verdict = screened.verdict
    if prior is not None:
        return _duplicate(prior, screened, stored_form)
    data = screened.data
    if isinstance(verdict, Reject):
        record = data if screened.keyed and isinstance(data, Mapping) else None
        return Refuse(verdict, record)
    if not isinstance(data, Mapping) or not verdict.signal_id:
        raise ValueError("an admitted intent always comes from an object with a signal_id")
    if guard is None:
        raise ValueError(f"admitting {verdict.signal_id!r} needs its strategy's guard")
    if guard.full:
        return Refuse(guard.reject(verdict.signal_id), data, verdict)
    if limits is not None:
        breach = check_intent(verdict, limits, market)
        if breach is not None:
            return Refuse(breach, data, verdict)
    submitted = data.get("instrument")
    text = submitted if isinstance(submitted, str) else verdict.instrument.text
    return Admit(verdict, text)
