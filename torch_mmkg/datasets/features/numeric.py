r"""Numeric-literal features built from ``entity<TAB>attribute<TAB>value`` triple files.

The feature row of an entity has :math:`2A` columns for :math:`A` attributes (sorted by name):
columns :math:`[0, A)` hold the normalised value of each attribute and columns :math:`[A, 2A)` a
presence indicator, so an absent attribute (value column :obj:`0`) can never pass for a real value
that happens to normalise to :obj:`0`.
"""
import math
import re
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

__all__ = ['read_numeric_triples', 'parse_numeric_value', 'build_numeric_features',
           'read_sameas_links', 'db15k_numeric_rows']

NumericRow = Tuple[str, str, str, int]

_NUMBER_RE = re.compile(r'[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?')
_DATE_RE = re.compile(r'(-?)(\d+)-(\d{1,2})(?:-(\d{1,2}))?')
_SAMEAS_RE = re.compile(r'(\S+) <SameAs> (<\S+>) \.')
_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

DBPEDIA_PREFIX = '<http://dbpedia.org/resource/'
FREEBASE_ATTRIBUTE_PREFIX = '<http://rdf.freebase.com/ns/'


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _fractional_year(year: int, month: int, day: int) -> float:
    r"""``year + (day_of_year - 1) / days_in_year`` in the proleptic Gregorian calendar with
    astronomical year numbering (year 0 exists and is a leap year; Python's ``%`` keeps the leap
    rule valid for negative years)."""
    leap = _is_leap(year)
    if not 0 <= month <= 12:
        raise ValueError(f"month {month} is out of range")
    if month == 0 and day != 0:
        raise ValueError(f"day {day} given without a month")
    days = _MONTH_DAYS[max(month, 1) - 1] + (leap and month == 2)
    if not 0 <= day <= days:
        raise ValueError(f"day {day} is out of range for month {month} of year {year}")
    day_of_year = sum(_MONTH_DAYS[:max(month, 1) - 1]) + (leap and month > 2) + max(day, 1)
    return year + (day_of_year - 1) / (366 if leap else 365)


def parse_numeric_value(s: str) -> float:
    r"""Parses a literal value: a plain number (integer, decimal or scientific notation) or a date
    ``[-]Y-M[-D]`` (any number of year digits, one or two month/day digits).

    A date becomes the fractional year ``year + (day_of_year - 1) / days_in_year`` (proleptic
    Gregorian calendar, computed arithmetically so that negative years work; the written year is
    taken as the astronomical year). DBpedia writes an unknown month or day as :obj:`0`
    (``-63-0-0``): it is taken as the first month/day.

    Args:
        s (str): The literal.

    Returns:
        float: the finite value.

    Raises:
        ValueError: for anything else (including ``nan``/``inf`` and out-of-range values or
            dates); the message does not name a file, callers add it.
    """
    s = s.strip()
    if _NUMBER_RE.fullmatch(s) or s.lstrip('+-').lower() in ('nan', 'inf', 'infinity'):
        value = float(s)
        if not math.isfinite(value):
            raise ValueError(f"value {s!r} is not finite")
        return value
    m = _DATE_RE.fullmatch(s)
    if m is None:
        raise ValueError(f"cannot parse {s!r} as a number or a date")
    sign, year, month, day = m.groups()
    year = -int(year) if sign else int(year)
    try:
        return _fractional_year(year, int(month), int(day or 0))
    except ValueError as e:
        raise ValueError(f"invalid date {s!r}: {e}") from None


def read_numeric_triples(path: str, subject_prefix: Optional[str] = None) -> List[NumericRow]:
    r"""Reads a tab-separated ``subject<TAB>attribute<TAB>value`` file.

    Args:
        path (str): The file (UTF-8). Blank lines are skipped.
        subject_prefix (str, optional): If given, every subject must start with it (e.g.
            :obj:`"/m/"` for Freebase MIDs). (default: :obj:`None`)

    Returns:
        List[Tuple[str, str, str, int]]: ``(subject, attribute, value_str, lineno)`` rows in file
        order (fields stripped, line numbers 1-based). Every value is checked with
        :func:`parse_numeric_value`.

    Raises:
        ValueError: ``"{path}:{lineno}: ..."`` for a row without exactly three fields, an empty
            field, a subject without :obj:`subject_prefix` or a value that does not parse.
    """
    rows = []
    with open(path, encoding='utf-8') as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            parts = [p.strip() for p in line.rstrip('\r\n').split('\t')]
            if len(parts) != 3:
                raise ValueError(f"{path}:{lineno}: expected 3 tab-separated fields, got "
                                 f"{len(parts)} in {line.strip()[:80]!r}")
            subject, attribute, value = parts
            if not (subject and attribute and value):
                raise ValueError(f"{path}:{lineno}: empty field in {line.strip()[:80]!r}")
            if subject_prefix is not None and not subject.startswith(subject_prefix):
                raise ValueError(f"{path}:{lineno}: subject {subject!r} does not start with "
                                 f"{subject_prefix!r}")
            try:
                parse_numeric_value(value)
            except ValueError as e:
                raise ValueError(f"{path}:{lineno}: {e}") from None
            rows.append((subject, attribute, value, lineno))
    return rows


def build_numeric_features(
    rows: Sequence[NumericRow],
    entity_index: Mapping[str, int],
    num_entities: int,
    *,
    what: str = 'numeric triples',
    log_orders: float = 2.0,
) -> Tuple[Tensor, Tensor, List[str]]:
    r"""Turns numeric triples into a :obj:`[N, 2A]` feature matrix and an availability mask.

    Per attribute (statistics over the entities that have it, never over absent zeros):

    1. an (entity, attribute) pair with several values gets their **mean**;
    2. heavy-tailed attributes get the signed log transform
       :math:`\operatorname{sign}(v) \log(1 + |v|)`. The rule: the central 90% of the
       attribute's absolute values span more than :obj:`log_orders` orders of magnitude,
       :math:`\log_{10}(1 + q_{95}) - \log_{10}(1 + q_{05}) > \text{log\_orders}`
       (:math:`q` = quantiles of :math:`|v|`). Quantiles keep single outliers from deciding and
       :math:`1 + |v|` makes zeros harmless. On DB15K the default of two orders transforms the
       money, population, density and area attributes (budgets span 2.2 orders, gross 2.3,
       population density 2.5, total population 3.1) and leaves dates, years, coordinates,
       runtimes and UTC offsets (below 2) linear;
    3. z-score with the mean and (population) standard deviation of those values; a (numerically)
       constant attribute uses a standard deviation of :obj:`1`.

    Columns :math:`[0, A)` hold the normalised values (:obj:`0` where absent), columns
    :math:`[A, 2A)` the presence indicator (:obj:`1.0`/:obj:`0.0`). An entity without any attribute
    has an all-zero row and mask :obj:`False`; every other row has at least one presence bit set.

    Args:
        rows (Sequence[tuple]): ``(subject, attribute, value_str, lineno)`` rows, e.g. from
            :func:`read_numeric_triples`.
        entity_index (Mapping[str, int]): Entity name :math:`\to` id in :math:`[0, N)`.
        num_entities (int): Number of entities :math:`N`.
        what (str, optional): Names the source in error messages, typically the file path
            (messages read ``"{what}:{lineno}: ..."``). (default: :obj:`"numeric triples"`)
        log_orders (float, optional): The threshold of rule 2 (:obj:`math.inf` disables the log
            transform). (default: :obj:`2.0`)

    Returns:
        (Tensor, Tensor, List[str]): the float :obj:`[N, 2A]` features, the bool :obj:`[N]` mask
        and the :math:`A` attribute names in column order.

    Raises:
        ValueError: ``"{what}:{lineno}: ..."`` for a subject not in :obj:`entity_index` (nothing
            is dropped silently), an id outside :math:`[0, N)`, or a value that does not parse or
            is not finite.
    """
    attributes = sorted({row[1] for row in rows})
    column = {a: j for j, a in enumerate(attributes)}
    A = len(attributes)
    sums = np.zeros((num_entities, A))
    counts = np.zeros((num_entities, A))
    for subject, attribute, value, lineno in rows:
        idx = entity_index.get(subject)
        if idx is None:
            raise ValueError(f"{what}:{lineno}: unknown entity {subject!r} (not in the entity "
                             f"index)")
        if not 0 <= idx < num_entities:
            raise ValueError(f"{what}:{lineno}: entity {subject!r} has id {idx} outside "
                             f"[0, {num_entities})")
        try:
            v = parse_numeric_value(value)
        except ValueError as e:
            raise ValueError(f"{what}:{lineno}: {e}") from None
        sums[idx, column[attribute]] += v
        counts[idx, column[attribute]] += 1

    present = counts > 0
    x = np.zeros((num_entities, 2 * A))
    x[:, A:] = present
    for j in range(A):
        has = present[:, j]
        v = sums[has, j] / counts[has, j]
        if not np.isfinite(v).all():
            raise ValueError(f"{what}: the values of attribute {attributes[j]!r} overflow when "
                             f"averaged")
        a = np.abs(v)
        q05, q95 = np.quantile(a, [0.05, 0.95])
        if math.log10(1 + q95) - math.log10(1 + q05) > log_orders:
            v = np.sign(v) * np.log1p(a)
        v = v / max(np.abs(v).max(), 1e-300)  # z-scores are scale-free; this avoids overflow
        std = v.std()
        x[has, j] = (v - v.mean()) / (std if std > 1e-12 else 1.0)
    return (torch.from_numpy(x).float(), torch.from_numpy(present.any(axis=1)),
            attributes)


def read_sameas_links(path: str) -> Dict[str, List[str]]:
    r"""Reads mmkb's ``DB15K_SameAsLink.txt`` (``/m/xxx <SameAs> <http://dbpedia.org/...> .``).

    Returns:
        Dict[str, List[str]]: DBpedia IRI (with angle brackets, as in DB15K's ``entity2id.txt``)
        :math:`\to` its Freebase MIDs in file order (four IRIs have two MIDs).

    Raises:
        ValueError: ``"{path}:{lineno}: ..."`` for a malformed line or a MID linked twice.
    """
    links: Dict[str, List[str]] = {}
    seen = set()
    with open(path, encoding='utf-8') as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            m = _SAMEAS_RE.fullmatch(line.strip())
            if m is None:
                raise ValueError(f"{path}:{lineno}: expected '<mid> <SameAs> <iri> .', got "
                                 f"{line.strip()[:80]!r}")
            mid, iri = m.groups()
            if mid in seen:
                raise ValueError(f"{path}:{lineno}: MID {mid} is linked twice")
            seen.add(mid)
            links.setdefault(iri, []).append(mid)
    return links


def db15k_numeric_rows(literal_path: str, sameas_path: Optional[str] = None,
                       freebase_path: Optional[str] = None) -> List[NumericRow]:
    r"""Numeric rows of DB15K, keyed by the IRIs of DB15K's ``entity2id.txt``.

    Args:
        literal_path (str): ``DB15K_NumericalTriples_filtered.txt`` (DBpedia literals, subjects
            ``<http://dbpedia.org/resource/X>``).
        sameas_path (str, optional): ``DB15K_SameAsLink.txt``; needed with
            :obj:`freebase_path`. (default: :obj:`None`)
        freebase_path (str, optional): ``FB15K_NumericalTriples.txt``. Its rows are mapped to
            DB15K IRIs through the sameAs links (an IRI with two MIDs gets the rows of both,
            averaged downstream) and their attributes renamed ``fb:<name>`` (e.g.
            ``fb:location.geocode.latitude``) to stay distinct from the DBpedia ones. Rows of MIDs
            that are not DB15K entities are left out: they describe other entities.
            (default: :obj:`None`)

    Returns:
        List[Tuple[str, str, str, int]]: the rows; line numbers refer to the DBpedia file, or to
        the Freebase file for ``fb:`` attributes.
    """
    rows = read_numeric_triples(literal_path, subject_prefix=DBPEDIA_PREFIX)
    if freebase_path is None:
        return rows
    if sameas_path is None:
        raise ValueError("db15k_numeric_rows: freebase_path needs sameas_path to map Freebase "
                         "MIDs to DB15K entities")
    mid_to_iri = {mid: iri for iri, mids in read_sameas_links(sameas_path).items()
                  for mid in mids}
    for mid, attribute, value, lineno in read_numeric_triples(freebase_path,
                                                              subject_prefix='/m/'):
        if mid not in mid_to_iri:
            continue
        if not (attribute.startswith(FREEBASE_ATTRIBUTE_PREFIX) and attribute.endswith('>')):
            raise ValueError(f"{freebase_path}:{lineno}: attribute {attribute!r} is not a "
                             f"Freebase IRI ({FREEBASE_ATTRIBUTE_PREFIX}...>)")
        name = attribute[len(FREEBASE_ATTRIBUTE_PREFIX):-1]
        rows.append((mid_to_iri[mid], f'fb:{name}', value, lineno))
    return rows
