"""L2 depth around a top of book, with market makers rotating, and keyed random numbers.

Depth is computed on demand from the current top of book and a keyed hash of
(seed, con_id, step), so it is deterministic and costs nothing while nobody asks for it.
"""

from __future__ import annotations

from decimal import Decimal

from tws_sim.types import DepthLevel

_MASK = (1 << 64) - 1
# Exchange / MM codes IB shows in SMART depth for US names.
STOCK_MAKERS: tuple[str, ...] = ("NSDQ", "ARCA", "BATS", "EDGX", "IEX", "NYSE", "MEMX", "DRCTEDGE")
OPTION_MAKERS: tuple[str, ...] = ("CBOE", "ISE", "PHLX", "BOX", "AMEX", "MIAX", "PSE", "GEMINI")
ROTATE_STEPS = 8  # the makers at each level rotate every 8 grid steps (2 s)


def mix64(x: int) -> int:
    """SplitMix64 finalizer: a cheap, well-mixed 64-bit hash of an integer."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def keyed_uniform(seed: int, key: int, step: int, salt: int = 0) -> float:
    """A uniform in [0, 1) that depends only on (seed, key, step, salt)."""
    h = mix64(mix64(mix64(seed & _MASK ^ salt) ^ (key & _MASK)) ^ (step & _MASK))
    return (h >> 11) * (1.0 / (1 << 53))


_CENTS: dict[int, Decimal] = {}


def cents(n: int) -> Decimal:
    """An integer number of cents as an exact Decimal with two places (memoized: prices repeat
    tick after tick and Decimals are immutable, so sharing them is safe)."""
    d = _CENTS.get(n)
    if d is None:
        if len(_CENTS) > 200_000:
            _CENTS.clear()
        d = _CENTS[n] = Decimal(n).scaleb(-2)
    return d


def depth_levels(
    seed: int,
    con_id: int,
    step: int,
    bid_c: int,
    ask_c: int,
    bid_size: int,
    ask_size: int,
    tick_c: int,
    rows: int,
    lot: int,
    is_option: bool,
) -> list[DepthLevel]:
    """`rows` levels a side (asks first, side 0; then bids, side 1), IB's DepthLevel layout.

    Level 0 is the top of book with its displayed size; deeper levels step one tick away with
    sizes that grow with depth. Bids stop above zero. Makers rotate every `ROTATE_STEPS` steps.
    """
    makers = OPTION_MAKERS if is_option else STOCK_MAKERS
    n = len(makers)
    rot = int(keyed_uniform(seed, con_id, step // ROTATE_STEPS, 0xD3) * n)
    out: list[DepthLevel] = []
    for side, top_c, top_size, sign in ((0, ask_c, ask_size, 1), (1, bid_c, bid_size, -1)):
        for pos in range(rows):
            price_c = top_c + sign * pos * tick_c
            if price_c <= 0:
                break
            if pos == 0:
                size = top_size
            else:
                u = keyed_uniform(seed, con_id, step // ROTATE_STEPS, 0x100 + side * 64 + pos)
                size = lot * (1 + int(u * (2 + 2 * pos)))
            maker = makers[(rot + pos * 3 + side) % n]
            out.append(DepthLevel(side, pos, cents(price_c), Decimal(size), maker))
    return out
