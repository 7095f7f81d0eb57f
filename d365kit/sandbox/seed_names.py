"""Demo vocabulary of the seed: names in the shape of BC's CRONUS USA, Inc. company.

The first rows of every list are the CRONUS demo records; larger scales continue them with generated names
built from the pools below (deterministically, by index), so every number and name stays unique.
"""

from __future__ import annotations

COMPANY_NAME = "CRONUS USA, Inc."
OTHER_COMPANY_NAME = "CRONUS Canada"
LCY = "USD"

# code, name, job title
SALESPEOPLE = (
    ("PS", "Peter Saddow", "Sales Manager"),
    ("JR", "John Roberts", "Account Executive"),
    ("LT", "Lina Townsend", "Account Executive"),
    ("OF", "Otis Falls", "Sales Representative"),
    ("HR", "Helen Ray", "Sales Representative"),
    ("BC", "Benjamin Chiu", "Account Manager"),
    ("JO", "Jim Olive", "Account Manager"),
)

# code, description, symbol, exchange rate to USD (Dataverse: units per base currency)
CURRENCIES = (
    ("USD", "US dollar", "$", 1.0),
    ("EUR", "Euro", "€", 0.92),
    ("GBP", "Pound Sterling", "£", 0.79),
    ("CAD", "Canadian dollar", "$", 1.37),
    ("MXN", "Mexican peso", "$", 17.1),
    ("AUD", "Australian dollar", "$", 1.52),
    ("JPY", "Japanese yen", "¥", 149.5),
    ("CHF", "Swiss franc", "CHF", 0.88),
    ("DKK", "Danish krone", "kr.", 6.86),
    ("NOK", "Norwegian krone", "kr", 10.6),
    ("SEK", "Swedish krona", "kr", 10.5),
    ("NZD", "New Zealand dollar", "$", 1.66),
)
# Codes for planted currency records (never used by other rows).
SPARE_CURRENCIES = (
    ("SGD", "Singapore dollar", "S$"),
    ("HKD", "Hong Kong dollar", "HK$"),
    ("ZAR", "South African rand", "R"),
    ("PLN", "Polish zloty", "zł"),
    ("CZK", "Czech koruna", "Kč"),
    ("HUF", "Hungarian forint", "Ft"),
    ("INR", "Indian rupee", "₹"),
    ("BRL", "Brazilian real", "R$"),
    ("CNY", "Chinese yuan", "¥"),
    ("ISK", "Icelandic krona", "kr"),
    ("THB", "Thai baht", "฿"),
    ("TRY", "Turkish lira", "₺"),
    ("KRW", "South Korean won", "₩"),
    ("ILS", "Israeli new shekel", "₪"),
    ("AED", "UAE dirham", "AED"),
    ("SAR", "Saudi riyal", "SAR"),
    ("MYR", "Malaysian ringgit", "RM"),
    ("IDR", "Indonesian rupiah", "Rp"),
    ("PHP", "Philippine peso", "₱"),
    ("CLP", "Chilean peso", "$"),
    ("COP", "Colombian peso", "$"),
    ("PEN", "Peruvian sol", "S/"),
    ("RON", "Romanian leu", "lei"),
    ("BGN", "Bulgarian lev", "лв"),
)

# code, description, international standard code
UNITS = (
    ("PCS", "Piece", "EA"),
    ("BOX", "Box", "BX"),
    ("HOUR", "Hour", "HUR"),
    ("KG", "Kilogram", "KGM"),
    ("PACK", "Pack", "PK"),
    ("SET", "Set", "SET"),
    ("DAY", "Day", "DAY"),
    ("L", "Liter", "LTR"),
)
SPARE_UNITS = (
    ("PALLET", "Pallet", "PF"),
    ("MILES", "Miles", "SMI"),
    ("KM", "Kilometer", "KMT"),
    ("GR", "Gram", "GRM"),
    ("TON", "Tonne", "TNE"),
    ("CAN", "Can", "CA"),
    ("M", "Meter", "MTR"),
    ("CM", "Centimeter", "CMT"),
    ("FT", "Foot", "FOT"),
    ("YD", "Yard", "YRD"),
    ("LB", "Pound", "LBR"),
    ("OZ", "Ounce", "ONZ"),
    ("GAL", "Gallon", "GLL"),
    ("ROLL", "Roll", "RO"),
    ("DOZ", "Dozen", "DZN"),
    ("CASE", "Case", "CS"),
    ("BAG", "Bag", "BG"),
    ("BTL", "Bottle", "BO"),
    ("CRT", "Crate", "CR"),
    ("TUBE", "Tube", "TU"),
    ("SHEET", "Sheet", "ST"),
    ("MIN", "Minute", "MIN"),
    ("WEEK", "Week", "WEE"),
    ("MONTH", "Month", "MON"),
)

# code, option value in Dataverse (account/invoice paymenttermscode), description, due date formula
PAYMENT_TERMS = (
    ("NET30", 1, "Net 30 days", "30D"),
    ("2%10NET30", 2, "2% 10 days, net 30 days", "30D"),
    ("NET45", 3, "Net 45 days", "45D"),
    ("NET60", 4, "Net 60 days", "60D"),
    ("COD", None, "Cash on delivery", "0D"),
    ("CM", None, "Current month", "CM"),
)
# code, option value (account address1_freighttermscode), description
SHIPMENT_METHODS = (
    ("FOB", 1, "Free on board"),
    ("NOCHARGE", 2, "No charge"),
    ("EXW", None, "Ex works"),
    ("PICKUP", None, "Pickup at location"),
    ("CIF", None, "Cost insurance freight"),
)

CUSTOMERS = (
    "Adatum Corporation",
    "Trey Research",
    "School of Fine Art",
    "Alpine Ski House",
    "Relecloud",
    "Coho Winery",
    "Fabrikam, Inc.",
    "Contoso Pharmaceuticals",
    "Litware, Inc.",
    "Northwind Traders",
    "Tailspin Toys",
    "Wide World Importers",
    "Wingtip Toys",
    "Proseware, Inc.",
    "Lucerne Publishing",
    "Margie's Travel",
    "Fourth Coffee",
    "Graphic Design Institute",
    "Humongous Insurance",
    "Woodgrove Bank",
    "VanArsdel, Ltd.",
    "Blue Yonder Airlines",
    "City Power & Light",
    "Consolidated Messenger",
    "Southridge Video",
    "Bellows College",
    "Best For You Organics",
    "Contoso Suites",
    "First Up Consultants",
    "Munson's Pickles and Preserves",
)
NAME_STEMS = (
    "Aurora",
    "Beacon",
    "Cascade",
    "Delta",
    "Evergreen",
    "Falcon",
    "Granite",
    "Harbor",
    "Ironwood",
    "Juniper",
    "Keystone",
    "Lakeside",
    "Meridian",
    "Northgate",
    "Oakridge",
    "Pinnacle",
    "Quarry",
    "Redwood",
    "Summit",
    "Timberline",
    "Union",
    "Valley",
    "Westfield",
    "Yellowstone",
    "Zenith",
    "Atlas",
    "Bluebird",
    "Copper",
    "Driftwood",
    "Elm Street",
    "Foxglove",
    "Goldfinch",
    "Highland",
)
NAME_KINDS = (
    "Supply",
    "Outfitters",
    "Interiors",
    "Office Solutions",
    "Design Studio",
    "Hospitality",
    "Logistics",
    "Furnishings",
    "Partners",
    "Holdings",
    "Architects",
    "Consulting",
    "Clinic",
    "Academy",
)
NAME_FORMS = ("Inc.", "LLC", "Corp.", "Co.", "Ltd.", "Group")

FIRST_NAMES = (
    "Alicia",
    "Brian",
    "Carmen",
    "Derek",
    "Elena",
    "Frank",
    "Grace",
    "Hector",
    "Irene",
    "Jamal",
    "Karen",
    "Luis",
    "Maria",
    "Nathan",
    "Olivia",
    "Pedro",
    "Quinn",
    "Rachel",
    "Samuel",
    "Tanya",
    "Umar",
    "Vera",
    "Walter",
    "Ximena",
    "Yusuf",
    "Zoe",
    "Amber",
    "Bruno",
    "Chloe",
    "Dmitri",
    "Erin",
    "Felix",
)
LAST_NAMES = (
    "Anderson",
    "Becker",
    "Castillo",
    "Dawson",
    "Evans",
    "Fischer",
    "Garcia",
    "Hughes",
    "Ibarra",
    "Jensen",
    "Kowalski",
    "Larsen",
    "Morales",
    "Nguyen",
    "Okafor",
    "Patel",
    "Quintero",
    "Rossi",
    "Schmidt",
    "Tanaka",
    "Ulrich",
    "Vargas",
    "Walsh",
    "Xu",
    "Young",
    "Zimmerman",
    "Abbott",
    "Brennan",
    "Chavez",
    "Dubois",
)
JOB_TITLES = ("Purchasing Manager", "CFO", "Office Manager", "Buyer", "Facilities Lead", "Owner", "CEO")

# city, state (County), postal code, country code, currency
US_CITIES = (
    ("Atlanta", "GA", "31772"),
    ("Chicago", "IL", "61236"),
    ("Miami", "FL", "37125"),
    ("Seattle", "WA", "98101"),
    ("Denver", "CO", "80202"),
    ("Boston", "MA", "02108"),
    ("Dallas", "TX", "75201"),
    ("Phoenix", "AZ", "85004"),
    ("Portland", "OR", "97204"),
    ("Nashville", "TN", "37203"),
    ("Columbus", "OH", "43215"),
    ("San Diego", "CA", "92101"),
)
FOREIGN_CITIES = (
    ("Toronto", "ON", "M5H 2N2", "CA", "CAD"),
    ("Vancouver", "BC", "V6B 1A1", "CA", "CAD"),
    ("London", "", "EC1V 9HX", "GB", "GBP"),
    ("Munich", "BY", "80331", "DE", "EUR"),
    ("Amsterdam", "", "1012 AB", "NL", "EUR"),
    ("Monterrey", "NL", "64000", "MX", "MXN"),
)
STREETS = (
    "Main Street",
    "Oak Avenue",
    "Maple Drive",
    "Pine Road",
    "Cedar Lane",
    "Elm Street",
    "Lakeview Blvd",
    "Park Avenue",
    "Hillcrest Road",
    "Sunset Blvd",
    "River Road",
    "Market Street",
)

# number, description, unit price, unit cost, base unit
ITEMS = (
    ("1896-S", "ATHENS Desk", 1000.8, 780.7, "PCS"),
    ("1900-S", "PARIS Guest Chair, black", 192.8, 150.4, "PCS"),
    ("1906-S", "ATHENS Mobile Pedestal", 281.4, 219.5, "PCS"),
    ("1908-S", "LONDON Swivel Chair, blue", 190.1, 148.3, "PCS"),
    ("1920-S", "ANTWERP Conference Table", 649.4, 506.5, "PCS"),
    ("1925-W", "Conference Bundle 1-6", 133.7, 104.3, "PCS"),
    ("1928-S", "AMSTERDAM Lamp", 54.9, 42.8, "PCS"),
    ("1929-W", "Conference Bundle 1-8", 165.3, 128.9, "PCS"),
    ("1936-S", "BERLIN Guest Chair, yellow", 192.8, 150.4, "PCS"),
    ("1953-W", "Guest Section 1", 140.2, 109.4, "PCS"),
    ("1960-S", "ROME Guest Chair, green", 192.8, 150.4, "PCS"),
    ("1964-S", "TOKYO Guest Chair, blue", 192.8, 150.4, "PCS"),
    ("1965-W", "Conference Bundle 2-8", 152.1, 118.6, "PCS"),
    ("1968-S", "MEXICO Swivel Chair, black", 190.1, 148.3, "PCS"),
    ("1969-W", "Conference Package 1", 537.9, 419.6, "SET"),
    ("1972-S", "MUNICH Swivel Chair, yellow", 190.1, 148.3, "PCS"),
    ("1980-S", "MOSCOW Swivel Chair, red", 190.1, 148.3, "PCS"),
    ("1988-S", "SEOUL Guest Chair, red", 192.8, 150.4, "PCS"),
    ("1996-S", "ATLANTA Whiteboard, base", 1397.3, 1089.9, "PCS"),
    ("2000-S", "SYDNEY Swivel Chair, green", 190.1, 148.3, "PCS"),
)
ITEM_STEMS = (
    "OSLO",
    "LISBON",
    "DUBLIN",
    "VIENNA",
    "PRAGUE",
    "MADRID",
    "ZURICH",
    "HELSINKI",
    "ATHENS",
    "ROME",
)
ITEM_KINDS = ("Desk", "Guest Chair", "Swivel Chair", "Lamp", "Bookcase", "Cabinet", "Whiteboard", "Table")
ITEM_COLORS = ("black", "blue", "green", "red", "yellow", "white", "grey", "oak")

# number, name, type, unit price, unit cost
RESOURCES = (
    ("KATHERINE", "Katherine Hull", "Person", 110.0, 77.0),
    ("LINA", "Lina Townsend", "Person", 120.0, 84.0),
    ("MARTY", "Marty Horst", "Person", 90.0, 63.0),
    ("TERRY", "Terry Dodds", "Person", 100.0, 70.0),
    ("LIFT", "Lift for Furniture", "Machine", 45.0, 30.0),
    ("MOVER", "Furniture Mover Van", "Machine", 60.0, 41.0),
)

PRICE_GROUPS = (
    ("RETAIL", "Retail customers"),
    ("WHOLESALE", "Wholesale customers"),
    ("EXPORT", "Export customers"),
    ("GOV", "Government and education"),
    ("VIP", "Key accounts"),
)

OPPORTUNITY_TOPICS = (
    "Office refurbishment",
    "Conference room setup",
    "New branch furniture",
    "Reception area redesign",
    "Ergonomic chairs rollout",
    "Training center fit-out",
    "Annual furniture framework",
    "Lounge upgrade",
)


def company_name(i: int) -> str:
    """The i-th customer name: the CRONUS list first, then unique generated names."""
    if i < len(CUSTOMERS):
        return CUSTOMERS[i]
    j = i - len(CUSTOMERS)
    stem = NAME_STEMS[j % len(NAME_STEMS)]
    kind = NAME_KINDS[(j // len(NAME_STEMS)) % len(NAME_KINDS)]
    form = NAME_FORMS[(j // (len(NAME_STEMS) * len(NAME_KINDS))) % len(NAME_FORMS)]
    lap = j // (len(NAME_STEMS) * len(NAME_KINDS) * len(NAME_FORMS))
    return f"{stem} {kind} {form}" + (f" {lap + 1}" if lap else "")


def person_name(i: int) -> tuple[str, str]:
    """(first, last) of the i-th person; the last name gets a numeric suffix when the pools wrap."""
    first = FIRST_NAMES[i % len(FIRST_NAMES)]
    last = LAST_NAMES[(i // len(FIRST_NAMES)) % len(LAST_NAMES)]
    lap = i // (len(FIRST_NAMES) * len(LAST_NAMES))
    return first, last + (f"-{lap + 1}" if lap else "")


def item_description(i: int) -> str:
    if i < len(ITEMS):
        return ITEMS[i][1]
    j = i - len(ITEMS)
    stem = ITEM_STEMS[j % len(ITEM_STEMS)]
    kind = ITEM_KINDS[(j // len(ITEM_STEMS)) % len(ITEM_KINDS)]
    color = ITEM_COLORS[(j // (len(ITEM_STEMS) * len(ITEM_KINDS))) % len(ITEM_COLORS)]
    lap = j // (len(ITEM_STEMS) * len(ITEM_KINDS) * len(ITEM_COLORS))
    return f"{stem} {kind}, {color}" + (f" {lap + 1}" if lap else "")
