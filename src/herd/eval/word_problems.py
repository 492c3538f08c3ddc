"""herd's own grade-school word problems (not GSM8K): a fixed, generated set in GSM8K's answer format.

The Llama papers report GSM8K (8-shot, Llama 2 §2.3, Llama 3 §5.1.1),
but GSM8K (MIT licence) is not shipped with herd and herd runs offline, so the
default ``gsm8k`` task (``configs/eval/gsm8k.toml``) runs on this set instead
and says so; ``--data-dir`` swaps in the real one. These problems are much
easier and more regular than GSM8K's, so their score says that the model, the
prompt, the generation loop and the answer extraction work end to end: it is
**not** a GSM8K score.

Twelve templates (shopping, speed, ages, sharing, time, a bakery, discounts,
savings, a harvest, a recipe, tickets, a printer) each draw their numbers from
``random.Random(SEED)``, so the set is the same on every machine. Every
solution is written as GSM8K's are: one sentence a step, each calculation
annotated ``<<expression=value>>`` (the calculator annotations of GSM8K's
answers), and a last line ``#### <integer>``. The values are computed in Python;
the tests re-evaluate each annotation with their own evaluator and check that
every number in it comes from the question or an earlier step.

``python -m herd.eval.word_problems`` rewrites ``data/herd_word_problems/``
``{test,train}.jsonl`` (fields ``question`` and ``answer``); the tests check
that the shipped files are exactly what it writes.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

from herd.io.atomic import atomic_file

SEED = 20240731
SIZES = {"test": 200, "train": 16}
FOLDER = Path(__file__).parent / "data" / "herd_word_problems"

# (name, subject pronoun, possessive pronoun)
PEOPLE = (
    ("Mia", "she", "her"),
    ("Liam", "he", "his"),
    ("Ava", "she", "her"),
    ("Noah", "he", "his"),
    ("Zara", "she", "her"),
    ("Omar", "he", "his"),
    ("Priya", "she", "her"),
    ("Kenji", "he", "his"),
    ("Lucia", "she", "her"),
    ("Tomas", "he", "his"),
    ("Amara", "she", "her"),
    ("Felix", "he", "his"),
)

Problem = tuple[str, list[str], int]  # question, solution sentences, answer


def _calc(expression: str, value: int) -> str:
    """A GSM8K calculator annotation: ``expression = value`` written ``<<expression=value>>value``."""
    return f"<<{expression}={value}>>{value}"


def _shopping(rng: random.Random) -> Problem:
    name, _, _ = rng.choice(PEOPLE)
    notebooks, notebook_price = rng.randint(2, 6), rng.randint(2, 5)
    pens, pen_price = rng.randint(2, 8), rng.randint(1, 3)
    bill = 50 if notebooks * notebook_price + pens * pen_price < 50 else 100
    first = notebooks * notebook_price
    second = pens * pen_price
    total = first + second
    change = bill - total
    question = (
        f"{name} buys {notebooks} notebooks at ${notebook_price} each and {pens} pens at ${pen_price} each."
        f" {name} pays with a ${bill} bill. How much change, in dollars, does {name} get back?"
    )
    steps = [
        f"The notebooks cost {notebooks} * {notebook_price} = ${_calc(f'{notebooks}*{notebook_price}', first)}.",
        f"The pens cost {pens} * {pen_price} = ${_calc(f'{pens}*{pen_price}', second)}.",
        f"Together they cost {first} + {second} = ${_calc(f'{first}+{second}', total)}.",
        f"The change is {bill} - {total} = ${_calc(f'{bill}-{total}', change)}.",
    ]
    return question, steps, change


def _speed(rng: random.Random) -> Problem:
    first_speed, first_hours = rng.randrange(30, 75, 5), rng.randint(2, 5)
    second_speed, second_hours = rng.randrange(40, 90, 5), rng.randint(1, 4)
    first = first_speed * first_hours
    second = second_speed * second_hours
    total = first + second
    question = (
        f"A train travels at {first_speed} miles per hour for {first_hours} hours, then at {second_speed}"
        f" miles per hour for {second_hours} hours. How many miles does the train travel in total?"
    )
    steps = [
        f"First it travels {first_speed} * {first_hours} = "
        f"{_calc(f'{first_speed}*{first_hours}', first)} miles.",
        f"Then it travels {second_speed} * {second_hours} = "
        f"{_calc(f'{second_speed}*{second_hours}', second)} miles.",
        f"In total it travels {first} + {second} = {_calc(f'{first}+{second}', total)} miles.",
    ]
    return question, steps, total


def _ages(rng: random.Random) -> Problem:
    name, _, possessive = rng.choice(PEOPLE)
    age, older, years = rng.randint(4, 15), rng.randint(1, 6), rng.randint(2, 10)
    twice = 2 * age
    now = twice + older
    later = now + years
    question = (
        f"{name} is {age} years old. {possessive.capitalize()} aunt is {older} years older than twice"
        f" {name}'s age. How old will the aunt be in {years} years?"
    )
    steps = [
        f"Twice {name}'s age is 2 * {age} = {_calc(f'2*{age}', twice)} years.",
        f"The aunt is {twice} + {older} = {_calc(f'{twice}+{older}', now)} years old now.",
        f"In {years} years she will be {now} + {years} = {_calc(f'{now}+{years}', later)} years old.",
    ]
    return question, steps, later


def _sharing(rng: random.Random) -> Problem:
    students, each, kept = rng.randint(3, 12), rng.randint(3, 15), rng.randint(2, 20)
    total = students * each + kept
    rest = total - kept
    question = (
        f"A teacher has {total} stickers. She keeps {kept} for herself and shares the rest equally among"
        f" {students} students. How many stickers does each student get?"
    )
    steps = [
        f"She shares {total} - {kept} = {_calc(f'{total}-{kept}', rest)} stickers.",
        f"Each student gets {rest} / {students} = {_calc(f'{rest}/{students}', each)} stickers.",
    ]
    return question, steps, each


def _time(rng: random.Random) -> Problem:
    name, subject, _ = rng.choice(PEOPLE)
    while True:
        weekday, weekend, weeks = rng.randrange(15, 75, 5), rng.randrange(30, 150, 10), rng.randint(2, 6)
        if weeks * (5 * weekday + 2 * weekend) % 60 == 0:
            break
    weekdays = 5 * weekday
    weekends = 2 * weekend
    week = weekdays + weekends
    minutes = weeks * week
    hours = minutes // 60
    question = (
        f"{name} practises the piano for {weekday} minutes on each weekday and for {weekend} minutes on each"
        f" day of the weekend. How many hours does {subject} practise in {weeks} weeks?"
    )
    steps = [
        f"On the 5 weekdays {subject} practises 5 * {weekday} = {_calc(f'5*{weekday}', weekdays)} minutes.",
        f"On the 2 weekend days {subject} practises 2 * {weekend} = "
        f"{_calc(f'2*{weekend}', weekends)} minutes.",
        f"A week is {weekdays} + {weekends} = {_calc(f'{weekdays}+{weekends}', week)} minutes.",
        f"In {weeks} weeks that is {weeks} * {week} = {_calc(f'{weeks}*{week}', minutes)} minutes.",
        f"That is {minutes} / 60 = {_calc(f'{minutes}/60', hours)} hours.",
    ]
    return question, steps, hours


def _bakery(rng: random.Random) -> Problem:
    while True:
        trays, per_tray, morning = rng.randint(3, 9), rng.choice((6, 8, 10, 12)), rng.randint(5, 30)
        if trays * per_tray > morning and (trays * per_tray - morning) % 2 == 0:
            break
    baked = trays * per_tray
    rest = baked - morning
    afternoon = rest // 2
    left = rest - afternoon
    question = (
        f"A bakery bakes {trays} trays of {per_tray} muffins each. It sells {morning} muffins in the morning"
        f" and half of the remaining muffins in the afternoon. How many muffins are left at the end of the day?"
    )
    steps = [
        f"The bakery bakes {trays} * {per_tray} = {_calc(f'{trays}*{per_tray}', baked)} muffins.",
        f"After the morning {baked} - {morning} = {_calc(f'{baked}-{morning}', rest)} muffins remain.",
        f"In the afternoon it sells {rest} / 2 = {_calc(f'{rest}/2', afternoon)} muffins.",
        f"So {rest} - {afternoon} = {_calc(f'{rest}-{afternoon}', left)} muffins are left.",
    ]
    return question, steps, left


def _discount(rng: random.Random) -> Problem:
    name, subject, _ = rng.choice(PEOPLE)
    price, percent, count = 20 * rng.randint(2, 10), rng.choice((10, 15, 20, 25, 50)), rng.randint(2, 4)
    off = price * percent // 100
    sale = price - off
    total = count * sale
    question = (
        f"A jacket costs ${price}. This week it is on sale for {percent}% off. How much, in dollars, does"
        f" {name} pay if {subject} buys {count} jackets on sale?"
    )
    steps = [
        f"The discount is {price} * {percent} / 100 = ${_calc(f'{price}*{percent}/100', off)}.",
        f"A jacket on sale costs {price} - {off} = ${_calc(f'{price}-{off}', sale)}.",
        f"{count} jackets cost {count} * {sale} = ${_calc(f'{count}*{sale}', total)}.",
    ]
    return question, steps, total


def _savings(rng: random.Random) -> Problem:
    name, subject, _ = rng.choice(PEOPLE)
    weekly, weeks, saved = rng.randrange(5, 40, 5), rng.randint(3, 15), rng.randrange(10, 100, 10)
    cost = saved + weekly * weeks
    needed = cost - saved
    question = (
        f"{name} wants a bike that costs ${cost}. {subject.capitalize()} has already saved ${saved} and saves"
        f" ${weekly} more every week. How many weeks will it take {name} to have enough for the bike?"
    )
    steps = [
        f"{name} still needs {cost} - {saved} = ${_calc(f'{cost}-{saved}', needed)}.",
        f"That takes {needed} / {weekly} = {_calc(f'{needed}/{weekly}', weeks)} weeks.",
    ]
    return question, steps, weeks


def _harvest(rng: random.Random) -> Problem:
    while True:
        rows, plants, each, box = (
            rng.randint(3, 8),
            rng.randint(4, 12),
            rng.randint(5, 20),
            rng.choice((6, 10, 12)),
        )
        if rows * plants * each % box == 0:
            break
    per_row = plants * each
    tomatoes = rows * per_row
    boxes = tomatoes // box
    question = (
        f"A farmer plants {rows} rows of tomato plants with {plants} plants in each row. Each plant gives"
        f" {each} tomatoes. The farmer packs the tomatoes in boxes of {box}. How many boxes does the farmer fill?"
    )
    steps = [
        f"Each row gives {plants} * {each} = {_calc(f'{plants}*{each}', per_row)} tomatoes.",
        f"All rows give {rows} * {per_row} = {_calc(f'{rows}*{per_row}', tomatoes)} tomatoes.",
        f"That fills {tomatoes} / {box} = {_calc(f'{tomatoes}/{box}', boxes)} boxes.",
    ]
    return question, steps, boxes


def _recipe(rng: random.Random) -> Problem:
    name, subject, _ = rng.choice(PEOPLE)
    cups, cookies, batches = rng.randint(2, 5), rng.choice((12, 18, 20, 24, 30)), rng.randint(2, 7)
    wanted = cookies * batches
    flour = batches * cups
    question = (
        f"A recipe uses {cups} cups of flour to make {cookies} cookies. {name} wants to make {wanted} cookies."
        f" How many cups of flour does {subject} need?"
    )
    steps = [
        f"{wanted} cookies are {wanted} / {cookies} = {_calc(f'{wanted}/{cookies}', batches)} batches.",
        f"{subject.capitalize()} needs {batches} * {cups} = {_calc(f'{batches}*{cups}', flour)} cups of flour.",
    ]
    return question, steps, flour


def _tickets(rng: random.Random) -> Problem:
    adult, child = rng.randint(8, 20), rng.randint(3, 7)
    adults, children = rng.randint(1, 4), rng.randint(1, 6)
    snacks, snack = rng.randint(2, 8), rng.randint(2, 5)
    first = adults * adult
    second = children * child
    third = snacks * snack
    tickets = first + second
    total = tickets + third
    question = (
        f"Tickets to a show cost ${adult} for an adult and ${child} for a child. A group of {adults} adults"
        f" and {children} children goes to the show and buys {snacks} snacks at ${snack} each. How much, in"
        " dollars, does the group spend in total?"
    )
    steps = [
        f"The adult tickets cost {adults} * {adult} = ${_calc(f'{adults}*{adult}', first)}.",
        f"The child tickets cost {children} * {child} = ${_calc(f'{children}*{child}', second)}.",
        f"The snacks cost {snacks} * {snack} = ${_calc(f'{snacks}*{snack}', third)}.",
        f"The tickets cost {first} + {second} = ${_calc(f'{first}+{second}', tickets)}.",
        f"In total the group spends {tickets} + {third} = ${_calc(f'{tickets}+{third}', total)}.",
    ]
    return question, steps, total


def _printer(rng: random.Random) -> Problem:
    while True:
        speed, copies, pages = rng.randint(4, 30), rng.randint(5, 40), rng.randint(3, 24)
        if copies * pages % speed == 0:
            break
    total = copies * pages
    minutes = total // speed
    question = (
        f"A printer prints {speed} pages per minute. How many minutes does it take to print {copies} copies"
        f" of a report that is {pages} pages long?"
    )
    steps = [
        f"The copies have {copies} * {pages} = {_calc(f'{copies}*{pages}', total)} pages.",
        f"Printing them takes {total} / {speed} = {_calc(f'{total}/{speed}', minutes)} minutes.",
    ]
    return question, steps, minutes


TEMPLATES: tuple[Callable[[random.Random], Problem], ...] = (
    _shopping,
    _speed,
    _ages,
    _sharing,
    _time,
    _bakery,
    _discount,
    _savings,
    _harvest,
    _recipe,
    _tickets,
    _printer,
)


def generate() -> dict[str, list[dict[str, str]]]:
    """Every split's problems (``question``, ``answer``), templates taken in turn, no question twice."""
    rng = random.Random(SEED)
    seen: set[str] = set()
    splits: dict[str, list[dict[str, str]]] = {}
    for split, size in SIZES.items():
        rows: list[dict[str, str]] = []
        while len(rows) < size:
            question, steps, answer = TEMPLATES[len(seen) % len(TEMPLATES)](rng)
            if question in seen:
                continue
            seen.add(question)
            rows.append({"question": question, "answer": "\n".join([*steps, f"#### {answer}"])})
        splits[split] = rows
    return splits


def render(rows: list[dict[str, str]]) -> bytes:
    """``rows`` as JSONL, one object a line."""
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")


def write(folder: Path = FOLDER) -> None:
    """Write ``{split}.jsonl`` of every split into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in generate().items():
        with atomic_file(folder / f"{split}.jsonl") as staged:
            staged.write_bytes(render(rows))


if __name__ == "__main__":
    write()
