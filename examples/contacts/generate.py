#!/usr/bin/env python3
"""Generates crm-export/contacts.csv: realistic, deterministic sample contacts.

Run from this folder: python3 generate.py [COUNT]. Emails come in mixed case with
stray spaces and phones in the many shapes CRMs hold, so the `normalize` transform
has real work to do; every record is valid, so the demo ends Completed.
"""
import csv
import random
import sys

FIRST = "Ada Grace Alan Barbara Linus Margaret Ken Dennis Frances Edsger Radia John Sophie Tim Hedy Katherine Claude Donald Leslie Niklaus Yukihiro Guido Bjarne Anders Rasmus Joan Mary Carol Lynn Shafi Silvio Judea Vint Bob Whitfield Ivan Jean Fernando Elena Priya Wei Ana Lucas Mateo Chiara Noah Emma Olivia Liam Mia".split()
LAST = "Lovelace Hopper Turing Liskov Torvalds Hamilton Thompson Ritchie Allen Dijkstra Perlman McCarthy Wilson Berners-Lee Lamarr Johnson Shannon Knuth Lamport Wirth Matsumoto Rossum Stroustrup Hejlsberg Lerdorf Daemen Shaw Kahn Diffie Sutherland Bachman Corbato Rossi Garcia Kumar Zhang Silva Müller Dubois Novak O'Brien Nakamura Schmidt Kowalski Jensen".split()
COMPANIES = ["Acme Corp", "Globex", "Initech", "Umbrella Foods", "Stark Industries", "Wayne Enterprises", "Hooli", "Vandelay Industries", "Soylent", "Cyberdyne Systems", "Tyrell Corp", "Wonka Industries", "Aperture Science", "Black Mesa", "Contoso", "Fabrikam", "Northwind Traders", "Tailspin Toys"]
TITLES = ["CEO", "CTO", "Head of Sales", "Account Manager", "Buyer", "Procurement Lead", "Engineer", "Marketing Manager", "Office Manager", "CFO", "Data Analyst", "Operations Director"]
# (city, country, calling code, national number length)
PLACES = [("San Francisco", "US", "1", 10), ("New York", "US", "1", 10), ("Austin", "US", "1", 10), ("Chicago", "US", "1", 10), ("Toronto", "CA", "1", 10), ("London", "GB", "44", 10), ("Paris", "FR", "33", 9), ("Berlin", "DE", "49", 10), ("Madrid", "ES", "34", 9), ("Milan", "IT", "39", 10), ("Amsterdam", "NL", "31", 9), ("Sydney", "AU", "61", 9)]


def us_phone(rng):
    area = rng.randint(201, 989)
    n = f"{area}{rng.randint(200, 999)}{rng.randint(0, 9999):04d}"
    shape = rng.randrange(5)
    if shape == 0:
        return f"({n[:3]}) {n[3:6]}-{n[6:]}"
    if shape == 1:
        return f"{n[:3]}.{n[3:6]}.{n[6:]}"
    if shape == 2:
        return f"1-{n[:3]}-{n[3:6]}-{n[6:]}"
    if shape == 3:
        return f"+1 {n[:3]} {n[3:6]} {n[6:]}"
    return n


def intl_phone(rng, code, length):
    digits = str(rng.randint(1, 9)) + "".join(str(rng.randint(0, 9)) for _ in range(length - 1))
    groups = " ".join(digits[i:i + 2] for i in range(0, len(digits), 2))
    shape = rng.randrange(3)
    if shape == 0:
        return f"+{code} {groups}"
    if shape == 1:
        return f"00{code} {groups}"
    return f"0{digits}" if code == "1" else f"+{code}{digits}"


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    rng = random.Random(20261125)
    with open("crm-export/contacts.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["id", "first_name", "last_name", "email", "phone", "company", "job_title", "city", "country", "created_at"])
        for i in range(1, count + 1):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            company = rng.choice(COMPANIES)
            domain = company.lower().replace(" ", "") + rng.choice([".com", ".io", ".net"])
            local = f"{first}.{last}".replace("'", "").replace("ü", "u")
            if i % 7 == 0:
                local = local.upper()
            email = local + ("" if i % 3 else str(i)) + "@" + domain
            if i % 11 == 0:
                email = f"  {email} "
            city, country, code, length = rng.choice(PLACES)
            phone = us_phone(rng) if code == "1" else intl_phone(rng, code, length)
            created = f"20{rng.randint(18, 25)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z"
            w.writerow([i, first, last, email, phone, company, rng.choice(TITLES), city, country, created])


if __name__ == "__main__":
    main()
