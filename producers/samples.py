"""Realistic sample events for demos, load and end-to-end tests.

Each account gets a small world (tags, funnels, products) and a history that the events keep
consistent: tags are added to contacts that lack them and removed from contacts that have them,
opt-ins and sales come from known people, and a cancel always refers to an earlier sale of the
same account that was not canceled yet (``subscription_canceled`` for subscriptions, ``refunded``
for one-shot payments).

A kind whose preconditions are not met yet (a cancel before any sale) is replaced by the kind that
creates them, when that kind was requested; otherwise the account is given a history from before
the stream (contacts, sales) that no event announces.

With ``start`` the stream is reproducible for a seed (a simulated clock and seeded event ids);
without it events happen now and get fresh ids, the seed still fixing their content.
"""

from __future__ import annotations

import random
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace

from producers.events import (
    Cancellation,
    CancellationReason,
    Contact,
    ContactField,
    Customer,
    Event,
    EventType,
    Funnel,
    FunnelStep,
    Order,
    PricePlan,
    Tag,
    Timestamp,
    contact_created,
    contact_opt_in,
    contact_tag_added,
    contact_tag_removed,
    now_millis,
    sale_canceled,
    sale_new,
    to_millis,
)

__all__ = ["DEFAULT_WEIGHTS", "SampleGenerator"]

#: How often each kind happens, relative to the others.
DEFAULT_WEIGHTS: dict[EventType, float] = {
    EventType.CONTACT_CREATED: 30,
    EventType.CONTACT_TAG_ADDED: 20,
    EventType.CONTACT_TAG_REMOVED: 8,
    EventType.CONTACT_OPT_IN: 15,
    EventType.SALE_NEW: 20,
    EventType.SALE_CANCELED: 7,
}

_DAY_MS = 86_400_000

# (locale, country, cities, phone prefix, first names, surnames)
_PEOPLE = [
    (
        "fr",
        "FR",
        ["Paris", "Lyon", "Marseille", "Toulouse", "Nantes", "Lille"],
        "+33 6",
        ["Camille", "Léa", "Manon", "Hugo", "Lucas", "Chloé", "Théo", "Inès", "Jules", "Zoé"],
        ["Martin", "Bernard", "Dubois", "Lefèvre", "Moreau", "Girard", "Roux", "Fontaine"],
    ),
    (
        "en",
        "US",
        ["Austin", "Denver", "Portland", "Chicago", "Boston", "San Diego"],
        "+1 512",
        ["Emily", "Olivia", "Liam", "Noah", "Ava", "Mason", "Harper", "Ethan", "Sofia", "Jack"],
        ["Smith", "Johnson", "Brown", "Miller", "Davis", "Garcia", "Wilson", "Taylor"],
    ),
    (
        "en-GB",
        "GB",
        ["London", "Manchester", "Bristol", "Leeds", "Edinburgh"],
        "+44 7700",
        ["Oliver", "Amelia", "Isla", "George", "Freya", "Harry", "Poppy"],
        ["Jones", "Evans", "Thomas", "Roberts", "Walker", "Wright"],
    ),
    (
        "de",
        "DE",
        ["Berlin", "Hamburg", "München", "Köln", "Leipzig"],
        "+49 151",
        ["Lena", "Jonas", "Mia", "Felix", "Hannah", "Paul", "Emma"],
        ["Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Wagner"],
    ),
    (
        "es",
        "ES",
        ["Madrid", "Barcelona", "Valencia", "Sevilla", "Bilbao"],
        "+34 612",
        ["Lucía", "Martina", "Pablo", "Álvaro", "Sara", "Mateo"],
        ["García", "Fernández", "López", "Martínez", "Sánchez", "Pérez"],
    ),
    (
        "pt-BR",
        "BR",
        ["São Paulo", "Rio de Janeiro", "Curitiba", "Recife"],
        "+55 11 9",
        ["Ana", "João", "Beatriz", "Gabriel", "Júlia", "Rafael"],
        ["Silva", "Santos", "Oliveira", "Souza", "Costa"],
    ),
]
_MAIL_DOMAINS = ["gmail.com", "outlook.com", "yahoo.com", "proton.me", "icloud.com", "gmx.de", "orange.fr"]
_BRANDS = ["yogaflow", "copylab", "sourdoughschool", "growthdojo", "calmcoach", "pixelacademy", "fitwithmia"]
_TAG_NAMES = [
    "Lead",
    "Customer",
    "Newsletter",
    "Webinar attendee",
    "VIP",
    "Cold",
    "Black Friday 2024",
    "Free guide",
    "Course completed",
    "Affiliate",
    "Needs follow-up",
    "Podcast listener",
]
_FUNNELS = [
    ("Free yoga guide", ["Opt-in page", "Bonus video opt-in"]),
    ("Webinar: launch your course", ["Registration", "Replay opt-in"]),
    ("7-day copywriting challenge", ["Sign-up"]),
    ("Sourdough starter checklist", ["Opt-in page"]),
    ("Waiting list", ["Join the list"]),
]
_ONE_SHOT = [
    ("Sourdough Basics (e-book)", [19.0, 27.0]),
    ("Copywriting Bootcamp", [197.0, 297.0, 497.0]),
    ("Yoga Masterclass", [47.0, 97.0]),
    ("1:1 Coaching session", [150.0, 250.0]),
    ("Lightroom preset pack", [29.0, 37.0]),
]
_SUBSCRIPTIONS = [
    ("Gold membership (monthly)", [19.0, 29.0, 49.0]),
    ("Yoga studio online (monthly)", [9.9, 14.9]),
    ("Mastermind (yearly)", [490.0, 990.0]),
    ("Private community", [7.0, 12.0]),
]
_PROCESSORS = ["stripe", "stripe", "stripe", "paypal"]
_PAGES = ["", "free-guide", "webinar", "checkout", "blog/10-tips", "offer"]


def _ascii(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return "".join(c for c in plain.lower() if c.isalnum())


@dataclass
class _Sale:
    customer: Customer
    order: Order
    plan: PricePlan


@dataclass
class _Account:
    id: str
    brand: str
    tags: list[Tag]
    steps: list[FunnelStep]
    plans: list[PricePlan]
    contacts: list[Contact] = field(default_factory=list)
    customers: dict[str, Customer] = field(default_factory=dict)  # by e-mail
    open_sales: list[_Sale] = field(default_factory=list)


class SampleGenerator:
    """An endless, consistent stream of sample :class:`~producers.events.Event` values.

    ``accounts`` is a number of random accounts or a list of account ids; ``kinds`` restricts
    the event types (default: all six); ``weights`` changes how often each kind happens.
    """

    def __init__(
        self,
        *,
        seed: int | None = None,
        accounts: int | Sequence[str] = 10,
        kinds: Iterable[EventType | str] | None = None,
        weights: dict[EventType, float] | None = None,
        start: Timestamp | None = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        chosen = list(EventType) if kinds is None else [EventType(k) for k in kinds]
        if not chosen:
            raise ValueError("kinds must name at least one event type")
        self.kinds: list[EventType] = list(dict.fromkeys(chosen))
        w = DEFAULT_WEIGHTS if weights is None else weights
        self._weights = [w.get(k, 0.0) for k in self.kinds]
        if not any(x > 0 for x in self._weights):
            raise ValueError("at least one requested kind needs a positive weight")
        if isinstance(accounts, int):
            if accounts < 1:
                raise ValueError("accounts must be >= 1")
            ids = [f"acct-{self.rng.getrandbits(40):010x}" for _ in range(accounts)]
        else:
            ids = list(dict.fromkeys(accounts))
            if not ids:
                raise ValueError("accounts must not be empty")
        self._simulated = start is not None
        if start is not None:
            self._now = to_millis(start)
        else:
            self._now = now_millis()
        self._clock = clock or now_millis
        self._next_id = {
            k: self.rng.randrange(1_000_000, 9_000_000) for k in ("contact", "order", "customer")
        }
        self._next_id["world"] = self.rng.randrange(10_000, 90_000)
        self.accounts = [self._new_account(a) for a in ids]
        # A few accounts are much busier than the rest, as in real life.
        self._account_weights = [1.0 / (i + 1) ** 0.7 for i in range(len(self.accounts))]
        self.rng.shuffle(self._account_weights)

    # ------------------------------------------------------------------ public

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        return self.next_event()

    def take(self, count: int) -> list[Event]:
        return [self.next_event() for _ in range(count)]

    def next_event(self) -> Event:
        now = self._tick()
        acct = self.rng.choices(self.accounts, self._account_weights)[0]
        kind = self._feasible_kind(acct, self.rng.choices(self.kinds, self._weights)[0])
        return self._make(acct, kind, now)

    # ------------------------------------------------------------------ world building

    def _id(self, kind: str) -> int:
        self._next_id[kind] += self.rng.randint(1, 17)
        return self._next_id[kind]

    def _tick(self) -> int:
        if self._simulated:
            self._now += int(self.rng.expovariate(1 / 250)) + 1
        else:
            self._now = max(self._now + 1, self._clock())
        return self._now

    def _event_id(self) -> str:
        if self._simulated:
            return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        return str(uuid.uuid4())

    def _new_account(self, account_id: str) -> _Account:
        rng = self.rng
        brand = rng.choice(_BRANDS)
        tags = [Tag(self._id("world"), n) for n in rng.sample(_TAG_NAMES, rng.randint(4, 8))]
        steps = []
        for funnel_name, step_names in rng.sample(_FUNNELS, rng.randint(1, 3)):
            funnel = Funnel(self._id("world"), funnel_name)
            steps += [FunnelStep(self._id("world"), s, funnel) for s in step_names]
        currency = rng.choice(["EUR", "EUR", "USD"])
        plans = []
        for name, prices in rng.sample(_ONE_SHOT, rng.randint(1, 3)):
            inner = f"{_ascii(name)[:12]}-{rng.choice(['launch', 'evergreen', 'promo'])}"
            plans.append(
                PricePlan(
                    self._id("world"),
                    name,
                    currency,
                    "one_shot",
                    rng.choice(prices),
                    rng.choice([None, inner]),
                )
            )
        for name, prices in rng.sample(_SUBSCRIPTIONS, rng.randint(1, 2)):
            plans.append(PricePlan(self._id("world"), name, currency, "subscription", rng.choice(prices)))
        return _Account(account_id, brand, tags, steps, plans)

    def _person(self) -> tuple[str, str, str, str, str, str | None]:
        """(locale, country, first name, surname, city, phone)."""
        rng = self.rng
        locale, country, cities, prefix, firsts, lasts = rng.choice(_PEOPLE)
        phone = f"{prefix} {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)}"
        return (
            locale,
            country,
            rng.choice(firsts),
            rng.choice(lasts),
            rng.choice(cities),
            rng.choice([phone, None]),
        )

    def _url(self, acct: _Account) -> str:
        return f"https://{acct.brand}.example.com/{self.rng.choice(_PAGES)}"

    def _new_contact(self, acct: _Account, now: int, *, with_tags: bool = False) -> Contact:
        rng = self.rng
        locale, country, first, last, city, phone = self._person()
        local = rng.choice([f"{_ascii(first)}.{_ascii(last)}", f"{_ascii(first)}{rng.randint(1, 999)}"])
        email = f"{local}@{rng.choice(_MAIL_DOMAINS)}"
        fields = [
            ContactField("First name", "first_name", first),
            ContactField("Surname", "surname", last),
            ContactField("Phone number", "phone_number", phone),
            ContactField("City", "city", city),
            ContactField("Country", "country", country),
        ]
        k = rng.randint(1, min(2, len(acct.tags))) if with_tags else 0
        contact = Contact(
            id=self._id("contact"),
            email=email,
            registered_at=now,
            locale=locale,
            source_url=rng.choice([self._url(acct), self._url(acct), None]),
            unsubscribed=rng.random() < 0.03,
            bounced=rng.random() < 0.01,
            needs_confirmation=rng.random() < 0.2,
            fields=fields,
            tags=rng.sample(acct.tags, k),
        )
        acct.contacts.append(contact)
        return contact

    def _customer(self, acct: _Account) -> Customer:
        rng = self.rng
        if acct.contacts and rng.random() < 0.6:  # most buyers are already contacts
            c = rng.choice(acct.contacts)
            email, first, last, country = (
                c.email,
                c.field_value("first_name") or "",
                c.field_value("surname") or "",
                c.field_value("country") or "",
            )
        else:
            _, country, first, last, _, _ = self._person()
            email = f"{_ascii(first)}.{_ascii(last)}{rng.randint(1, 99)}@{rng.choice(_MAIL_DOMAINS)}"
        known = acct.customers.get(email)
        if known is not None:
            return known
        fields = {"first_name": first, "surname": last, "country": country}
        customer = Customer(
            id=self._id("customer"),
            email=email,
            payment_processor=rng.choice(_PROCESSORS),
            source_url=self._url(acct),
            fields={k: v for k, v in fields.items() if v},
        )
        acct.customers[email] = customer
        return customer

    def _new_sale(self, acct: _Account, now: int) -> _Sale:
        plan = self.rng.choice(acct.plans)
        sale = _Sale(self._customer(acct), Order(self._id("order"), plan.amount, now), plan)
        acct.open_sales.append(sale)
        return sale

    # ------------------------------------------------------------------ kinds

    def _find(self, acct: _Account, wanted: Callable[[Contact], bool]) -> int | None:
        """Index of a random contact that satisfies ``wanted`` (a few random probes, then a scan)."""
        n = len(acct.contacts)
        if not n:
            return None
        for _ in range(8):
            i = self.rng.randrange(n)
            if wanted(acct.contacts[i]):
                return i
        first = self.rng.randrange(n)
        return next((i % n for i in range(first, first + n) if wanted(acct.contacts[i % n])), None)

    def _taggable(self, acct: _Account) -> Callable[[Contact], bool]:
        return lambda c: len(c.tags) < len(acct.tags)

    @staticmethod
    def _tagged(c: Contact) -> bool:
        return bool(c.tags)

    def _feasible_kind(self, acct: _Account, kind: EventType) -> EventType:
        """``kind`` if its preconditions hold; else the kind that creates them, or a back-filled history."""
        past = self._now - self.rng.randint(1, 90) * _DAY_MS
        if kind is EventType.SALE_CANCELED and not acct.open_sales:
            if EventType.SALE_NEW in self.kinds:
                return EventType.SALE_NEW
            self._new_sale(acct, past)
        if kind is EventType.CONTACT_TAG_REMOVED and self._find(acct, self._tagged) is None:
            if (
                EventType.CONTACT_TAG_ADDED in self.kinds
                and self._find(acct, self._taggable(acct)) is not None
            ):
                return EventType.CONTACT_TAG_ADDED
            if EventType.CONTACT_CREATED in self.kinds:
                return EventType.CONTACT_CREATED
            self._new_contact(acct, past, with_tags=True)
        if kind is EventType.CONTACT_TAG_ADDED and self._find(acct, self._taggable(acct)) is None:
            if EventType.CONTACT_CREATED in self.kinds:
                return EventType.CONTACT_CREATED
            self._new_contact(acct, past)
        if kind is EventType.CONTACT_OPT_IN and not acct.contacts:
            if EventType.CONTACT_CREATED in self.kinds:
                return EventType.CONTACT_CREATED
            self._new_contact(acct, past)
        return kind

    def _make(self, acct: _Account, kind: EventType, now: int) -> Event:
        rng = self.rng
        eid = self._event_id()
        if kind is EventType.CONTACT_CREATED:
            contact = self._new_contact(acct, now, with_tags=rng.random() < 0.3)
            return contact_created(acct.id, contact, event_id=eid, occurred_at=now)
        if kind is EventType.CONTACT_TAG_ADDED:
            i = self._find(acct, self._taggable(acct))
            assert i is not None  # _feasible_kind made sure
            old = acct.contacts[i]
            tag = rng.choice([t for t in acct.tags if t not in old.tags])
            acct.contacts[i] = new = replace(old, tags=(*old.tags, tag))
            return contact_tag_added(acct.id, new, tag, event_id=eid, occurred_at=now)
        if kind is EventType.CONTACT_TAG_REMOVED:
            i = self._find(acct, self._tagged)
            assert i is not None
            old = acct.contacts[i]
            tag = rng.choice(list(old.tags))
            acct.contacts[i] = new = replace(old, tags=tuple(t for t in old.tags if t != tag))
            return contact_tag_removed(acct.id, new, tag, event_id=eid, occurred_at=now)
        if kind is EventType.CONTACT_OPT_IN:
            contact = rng.choice(acct.contacts)
            return contact_opt_in(acct.id, contact, rng.choice(acct.steps), event_id=eid, occurred_at=now)
        if kind is EventType.SALE_NEW:
            sale = self._new_sale(acct, now)
            return sale_new(acct.id, sale.customer, sale.order, sale.plan, event_id=eid, occurred_at=now)
        sale = acct.open_sales.pop(rng.randrange(len(acct.open_sales)))
        reason: CancellationReason = (
            "subscription_canceled" if sale.plan.type == "subscription" else "refunded"
        )
        cancellation = Cancellation(reason, now, sale.order.id)
        return sale_canceled(
            acct.id, sale.customer, sale.order, sale.plan, cancellation, event_id=eid, occurred_at=now
        )
