"""Fixed vocabularies and text fragments for the demo warehouse (see `pipeline.demo`).

Free-text columns are composed from these fragments so that the number of distinct strings
stays in the low hundreds: each one is later embedded by a sentence model.
"""

from __future__ import annotations

REGIONS: list[tuple[str, str, str]] = [
    ("North America East", "US", "America/New_York"),
    ("North America West", "US", "America/Los_Angeles"),
    ("Canada", "CA", "America/Toronto"),
    ("United Kingdom", "GB", "Europe/London"),
    ("Central Europe", "DE", "Europe/Berlin"),
    ("Southern Europe", "ES", "Europe/Madrid"),
    ("Nordics", "SE", "Europe/Stockholm"),
    ("Australia", "AU", "Australia/Sydney"),
]
REGION_WEIGHTS = [0.24, 0.16, 0.09, 0.13, 0.14, 0.09, 0.06, 0.09]

PLANS = ["free", "basic", "pro", "enterprise"]
PLAN_WEIGHTS = [0.45, 0.30, 0.18, 0.07]
# Probability that a customer on each plan signs up with a company address.
COMPANY_EMAIL_RATE = [0.15, 0.30, 0.60, 0.90]

FIRST_NAMES = [
    "anna",
    "ben",
    "carla",
    "david",
    "elena",
    "felix",
    "grace",
    "hugo",
    "ines",
    "jack",
    "kara",
    "liam",
    "maya",
    "noah",
    "olga",
    "paul",
    "quinn",
    "rosa",
    "sam",
    "tara",
    "umar",
    "vera",
    "will",
    "xenia",
    "yusuf",
    "zoe",
    "omar",
    "lena",
    "marco",
    "nina",
]
LAST_NAMES = [
    "smith",
    "garcia",
    "muller",
    "rossi",
    "dubois",
    "kowalski",
    "jensen",
    "silva",
    "brown",
    "novak",
    "tanaka",
    "okafor",
    "nguyen",
    "schmidt",
    "larsen",
    "moreau",
    "walsh",
    "costa",
    "fischer",
    "evans",
    "berg",
    "patel",
    "lopez",
    "wright",
    "hughes",
]
FREE_MAIL_DOMAINS = ["gmail.com", "yahoo.com", "outlook.com", "proton.me", "icloud.com"]
COMPANY_DOMAINS = [
    "acme-corp.com",
    "globex.io",
    "initech.com",
    "umbrella-labs.com",
    "hooli.com",
    "stark-industries.com",
    "wayne-enterprises.com",
    "northwind.co",
    "contoso.com",
    "fabrikam.net",
    "tyrell.ai",
    "soylent.co",
]

NOTE_SOURCES = [
    "Referred by a friend.",
    "Came from a webinar.",
    "Found us through search.",
    "Met the team at a trade show.",
    "Migrated from a competitor.",
    "Signed up during the spring sale.",
    "Clicked a newsletter link.",
    "Joined after a free trial.",
    "Recommended by a partner agency.",
    "Came in through a podcast ad.",
]
NOTE_PREFERENCES = [
    "Prefers contact by email.",
    "Wants invoices as PDF.",
    "Asked about bulk pricing.",
    "Mostly orders from the mobile app.",
    "Interested in the API.",
    "Needs VAT numbers on invoices.",
    "Asked for a reporting demo.",
    "Buys gifts around the holidays.",
    "Likes to pay by bank transfer.",
    "Requested a dedicated account manager.",
    "Shares the account with a colleague.",
    "Asked to skip marketing calls.",
]

CATEGORIES: dict[str, tuple[float, list[str]]] = {
    "electronics": (120.0, ["Headphones", "Speaker", "Charger", "Webcam", "Keyboard", "Monitor"]),
    "home": (45.0, ["Lamp", "Cushion", "Blanket", "Mirror", "Clock", "Shelf"]),
    "kitchen": (35.0, ["Kettle", "Pan", "Knife Set", "Blender", "Mug Set", "Grinder"]),
    "garden": (30.0, ["Hose", "Planter", "Pruner", "Bird Feeder", "Lantern", "Seed Kit"]),
    "toys": (25.0, ["Puzzle", "Robot Kit", "Board Game", "Plush Bear", "Kite", "Train Set"]),
    "sports": (55.0, ["Yoga Mat", "Dumbbells", "Water Bottle", "Backpack", "Tent", "Racket"]),
    "beauty": (20.0, ["Face Cream", "Shampoo", "Perfume", "Hair Dryer", "Lip Balm", "Serum"]),
    "books": (15.0, ["Cookbook", "Novel", "Atlas", "Journal", "Field Guide", "Comic"]),
}
PRODUCT_ADJECTIVES = [
    "Aurora",
    "Classic",
    "Compact",
    "Deluxe",
    "Eco",
    "Everyday",
    "Nordic",
    "Pro",
    "Smart",
    "Studio",
    "Urban",
    "Vintage",
]
DESCRIPTION_OPENERS = [
    "A best-selling {category} item:",
    "Our customers' favourite in {category}:",
    "New this season in {category}:",
    "A reliable {category} essential:",
    "Great value from our {category} range:",
]
DESCRIPTION_FEATURES = [
    "built to last with sturdy materials.",
    "lightweight and easy to carry.",
    "designed for everyday use.",
    "comes with a two-year warranty.",
    "made from recycled materials.",
    "a thoughtful gift for any occasion.",
]

ANGRY_OPENERS = [
    "This is unacceptable.",
    "I am really frustrated.",
    "Third time I am writing.",
    "Very disappointed.",
]
ANGRY_COMPLAINTS = [
    "My order is two weeks late and tracking has not moved.",
    "The delivery was late again and nobody told me.",
    "The package never arrived although it says delivered.",
    "I returned the item a month ago and still have no refund.",
    "I want a full refund for this order immediately.",
    "You charged me twice and I want my money back.",
    "The product arrived broken and the box was crushed.",
    "The item stopped working after two days.",
    "I received the wrong item and the return label does not work.",
    "Your support never answers my emails.",
    "If this is not fixed I will cancel my subscription.",
    "I am moving to a competitor unless this is resolved.",
]
ANGRY_CLOSERS = [
    "Fix this now.",
    "I expect an answer today.",
    "I will leave a bad review.",
    "Please escalate this to a manager.",
]
QUESTION_OPENERS = ["Hi there,", "Hello,", "Good morning,", "Quick question:"]
QUESTIONS = [
    "could you send me the invoice for my last order?",
    "how do I change my delivery address?",
    "can I add a second user to my account?",
    "how do I update my payment card?",
    "do you ship to my region on weekends?",
    "is there a discount for yearly billing?",
    "how do I export my order history?",
    "can I change the email on my account?",
    "where can I find the user manual for my product?",
    "can I upgrade my plan in the middle of the month?",
    "do you offer gift wrapping?",
    "how do I set up two-factor login?",
]
QUESTION_CLOSERS = ["Thanks!", "Thank you in advance.", "Best regards."]
