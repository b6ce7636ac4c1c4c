"""Word lists for the demo data set (all invented; nothing is downloaded at run time).

Every list is a tuple so that iteration order, and with it the generated data, depends only on
the random seed.
"""

from __future__ import annotations

from leadflow.core.lifecycle import BadReason, Stage

DEMO_PASSWORD = "leadflow-demo"
STAFF_DOMAIN = "leadflow-demo.com"


def _words(text: str) -> tuple[str, ...]:
    """A comma-separated list (names may contain spaces: "van den Berg")."""

    return tuple(w.strip() for w in text.split(",") if w.strip())


# ------------------------------------------------------------------------------------- users

# (name, email local part, role, team)
USERS: tuple[tuple[str, str, str, str | None], ...] = (
    ("Alex Morgan", "admin", "admin", None),
    ("Priya Shah", "priya.shah", "marketing", None),
    ("Tom Becker", "tom.becker", "marketing", None),
    ("Sofia Lindqvist", "sofia.lindqvist", "manager", "EMEA"),
    ("Marcus Reed", "marcus.reed", "manager", "Americas"),
    ("Lena Fischer", "lena.fischer", "sales_rep", "EMEA"),
    ("Pierre Dubois", "pierre.dubois", "sales_rep", "EMEA"),
    ("Chloe Martin", "chloe.martin", "sales_rep", "EMEA"),
    ("Oliver Hughes", "oliver.hughes", "sales_rep", "EMEA"),
    ("Daniel Ortiz", "daniel.ortiz", "sales_rep", "Americas"),
    ("Maya Thompson", "maya.thompson", "sales_rep", "Americas"),
    ("Ethan Brooks", "ethan.brooks", "sales_rep", "Americas"),
    ("Camila Souza", "camila.souza", "sales_rep", "Americas"),
)
TEAMS: tuple[str, ...] = ("EMEA", "Americas")

# ------------------------------------------------------------------------------------- geography

# country -> (territory, weight, name group, time zones, legal suffixes, top-level domain)
COUNTRIES: dict[str, tuple[str, int, str, tuple[str, ...], tuple[str, ...], str]] = {
    "GB": ("EMEA", 22, "anglo", ("Europe/London",), ("Ltd", "Ltd", "plc", ""), "co.uk"),
    "DE": ("EMEA", 20, "german", ("Europe/Berlin",), ("GmbH", "GmbH", "AG", ""), "de"),
    "FR": ("EMEA", 12, "french", ("Europe/Paris",), ("SAS", "SA", ""), "fr"),
    "NL": ("EMEA", 9, "dutch", ("Europe/Amsterdam",), ("B.V.", "B.V.", ""), "nl"),
    "SE": ("EMEA", 6, "nordic", ("Europe/Stockholm",), ("AB", ""), "se"),
    "DK": ("EMEA", 4, "nordic", ("Europe/Copenhagen",), ("A/S", ""), "dk"),
    "ES": ("EMEA", 6, "spanish", ("Europe/Madrid",), ("S.L.", "S.A.", ""), "es"),
    "IT": ("EMEA", 5, "italian", ("Europe/Rome",), ("S.p.A.", "S.r.l.", ""), "it"),
    "CH": ("EMEA", 5, "german", ("Europe/Zurich",), ("AG", "GmbH", ""), "ch"),
    "IE": ("EMEA", 4, "anglo", ("Europe/Dublin",), ("Ltd", ""), "ie"),
    "PL": ("EMEA", 4, "polish", ("Europe/Warsaw",), ("sp. z o.o.", "S.A.", ""), "pl"),
    "BE": ("EMEA", 3, "dutch", ("Europe/Brussels",), ("NV", "BV", ""), "be"),
    "AE": ("EMEA", 2, "arabic", ("Asia/Dubai",), ("LLC", "FZ-LLC", ""), "ae"),
    "US": (
        "Americas",
        70,
        "anglo",
        ("America/New_York", "America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles"),
        ("Inc.", "Inc.", "LLC", "Corp.", ""),
        "com",
    ),
    "CA": ("Americas", 14, "anglo", ("America/Toronto", "America/Vancouver"), ("Inc.", "Ltd.", ""), "ca"),
    "BR": ("Americas", 8, "portuguese", ("America/Sao_Paulo",), ("Ltda.", "S.A.", ""), "com.br"),
    "MX": ("Americas", 5, "spanish", ("America/Mexico_City",), ("S.A. de C.V.", ""), "com.mx"),
    "CL": ("Americas", 3, "spanish", ("America/Santiago",), ("SpA", "S.A.", ""), "cl"),
}

# US and Canadian area codes used with the fictional 555-01xx range.
NANP_AREA_CODES: tuple[str, ...] = ("201", "212", "312", "415", "512", "617", "646", "206", "303", "404")
CA_AREA_CODES: tuple[str, ...] = ("416", "604", "514", "403", "613")

# ------------------------------------------------------------------------------------- people

FIRST_NAMES: dict[str, tuple[str, ...]] = {
    "anglo": _words(
        "James, Emily, Michael, Sarah, David, Jessica, Chris, Laura, Daniel, Rachel, Matthew, Hannah, "
        "Andrew, Megan, Ryan, Olivia, Kevin, Amy, Brian, Sophie, Jason, Natalie, Mark, Katie, Paul, "
        "Grace, Tyler, Lauren, Sean, Claire, Aidan, Siobhan, Connor, Zoe, Nathan, Rebecca, Jordan, "
        "Abigail, Kyle, Chloe"
    ),
    "german": _words(
        "Lukas, Anna, Jonas, Lea, Felix, Laura, Maximilian, Julia, Tobias, Katharina, Florian, Sabine, "
        "Stefan, Miriam, Matthias, Jana, Sebastian, Nina, Jürgen, Annika, Niklas, Franziska, Moritz, "
        "Lena, Andreas, Johanna, Dominik, Carina"
    ),
    "french": _words(
        "Julien, Camille, Nicolas, Manon, Thomas, Léa, Antoine, Chloé, Mathieu, Élodie, Guillaume, "
        "Claire, Romain, Pauline, Maxime, Sophie, Alexandre, Inès, Hugo, Margaux, Louis, Émilie, Benoît, "
        "Aurélie"
    ),
    "dutch": _words(
        "Daan, Sanne, Bram, Lotte, Jeroen, Fleur, Thijs, Eva, Ruben, Anouk, Sem, Iris, Joost, Marloes, "
        "Pieter, Femke, Wouter, Noor, Koen, Maaike"
    ),
    "nordic": _words(
        "Erik, Astrid, Lars, Ingrid, Johan, Freja, Anders, Maja, Nils, Sofie, Magnus, Elin, Mikkel, "
        "Karin, Oskar, Linnea, Henrik, Ida, Rasmus, Sigrid"
    ),
    "spanish": _words(
        "Javier, Lucía, Carlos, María, Alejandro, Carmen, Diego, Sofía, Pablo, Elena, Miguel, Paula, "
        "Andrés, Valentina, Sergio, Isabel, Fernando, Daniela, Luis, Marta, Mateo, Camila, Raúl, Ximena"
    ),
    "italian": _words(
        "Marco, Giulia, Luca, Francesca, Alessandro, Chiara, Matteo, Sara, Andrea, Elisa, Lorenzo, "
        "Martina, Davide, Federica, Simone, Valentina, Riccardo, Alessia"
    ),
    "portuguese": _words(
        "João, Ana, Pedro, Beatriz, Lucas, Mariana, Gabriel, Juliana, Rafael, Fernanda, Thiago, Larissa, "
        "Bruno, Camila, Felipe, Letícia, Gustavo, Renata"
    ),
    "polish": _words(
        "Piotr, Anna, Tomasz, Katarzyna, Paweł, Magdalena, Krzysztof, Agnieszka, Michał, Joanna, Marcin, "
        "Aleksandra, Jakub, Zofia"
    ),
    "arabic": _words(
        "Omar, Layla, Ahmed, Fatima, Khalid, Noor, Yousef, Mariam, Hassan, Aisha, Rami, Huda, Tariq, Salma"
    ),
    "global": _words(
        "Priya, Arjun, Wei, Mei, Hiroshi, Yuki, Min-jun, Ji-woo, Rahul, Ananya, Chen, Li, Kenji, Aiko, "
        "Vikram, Deepa, Tariq, Amara, Kwame, Nia, Mateus, Ivana, Dmitri, Olga, Farid, Leila, Sanjay, "
        "Kavya"
    ),
}

LAST_NAMES: dict[str, tuple[str, ...]] = {
    "anglo": _words(
        "Smith, Johnson, Williams, Brown, Jones, Miller, Davis, Wilson, Taylor, Anderson, Thomas, Moore, "
        "Jackson, White, Harris, Clark, Lewis, Walker, Hall, Young, King, Wright, Scott, Green, Baker, "
        "Adams, Campbell, Mitchell, Roberts, Carter, Evans, Turner, Parker, Collins, Edwards, Murphy, "
        "O'Brien, Kelly, Walsh, Byrne, McCarthy, Fitzgerald, Bennett, Hughes, Price, Cooper, Ward, "
        "Morgan, Bell, Foster"
    ),
    "german": _words(
        "Müller, Schmidt, Schneider, Fischer, Weber, Meyer, Wagner, Becker, Schulz, Hoffmann, Koch, "
        "Richter, Klein, Wolf, Schröder, Neumann, Schwarz, Zimmermann, Braun, Krüger, Hartmann, Lange, "
        "Werner, Krause, Lehmann, Köhler, Huber, Keller"
    ),
    "french": _words(
        "Martin, Bernard, Dubois, Thomas, Robert, Richard, Petit, Durand, Leroy, Moreau, Simon, Laurent, "
        "Lefèvre, Michel, Garcia, David, Bertrand, Roux, Vincent, Fournier, Girard, Bonnet, Dupont, "
        "Lambert"
    ),
    "dutch": _words(
        "de Jong, Jansen, de Vries, van den Berg, van Dijk, Bakker, Visser, Smit, Meijer, de Boer, "
        "Mulder, de Groot, Bos, Vos, Peters, Hendriks, van Leeuwen, Dekker, Maes, Claes, Peeters, Willems"
    ),
    "nordic": _words(
        "Johansson, Andersson, Karlsson, Nilsson, Eriksson, Larsson, Olsson, Persson, Svensson, Lindberg, "
        "Jensen, Nielsen, Hansen, Pedersen, Andersen, Christensen, Larsen, Sørensen, Lund, Berg"
    ),
    "spanish": _words(
        "García, Fernández, González, Rodríguez, López, Martínez, Sánchez, Pérez, Gómez, Martín, Jiménez, "
        "Ruiz, Hernández, Díaz, Moreno, Álvarez, Romero, Torres, Navarro, Ramírez, Flores, Castro, "
        "Vargas, Rojas"
    ),
    "italian": _words(
        "Rossi, Russo, Ferrari, Esposito, Bianchi, Romano, Colombo, Ricci, Marino, Greco, Bruno, Gallo, "
        "Conti, De Luca, Mancini, Costa, Giordano, Rizzo, Lombardi, Moretti"
    ),
    "portuguese": _words(
        "Silva, Santos, Oliveira, Souza, Rodrigues, Ferreira, Alves, Pereira, Lima, Gomes, Costa, "
        "Ribeiro, Martins, Carvalho, Almeida, Lopes, Araújo, Barbosa"
    ),
    "polish": _words(
        "Nowak, Kowalski, Wiśniewski, Wójcik, Kowalczyk, Kamiński, Lewandowski, Zieliński, Szymański, "
        "Woźniak, Dąbrowski, Kozłowski, Jankowski, Mazur"
    ),
    "arabic": _words(
        "Al-Mansouri, Haddad, Khalil, Nasser, Saleh, Al-Hashimi, Farouk, Aziz, Rahman, Hamdan, Qureshi, "
        "Youssef"
    ),
    "global": _words(
        "Patel, Sharma, Singh, Gupta, Chen, Wang, Zhang, Liu, Tanaka, Suzuki, Kim, Park, Nguyen, Tran, "
        "Okafor, Mensah, Ivanova, Petrov, Haddad, Rahimi, Iyer, Reddy, Nakamura, Lee"
    ),
}

# ------------------------------------------------------------------------------------- companies

INDUSTRIES: dict[str, tuple[tuple[str, ...], int]] = {
    # industry -> (name words, revenue per employee in USD)
    "Software": (
        ("Labs", "Software", "Systems", "Analytics", "Cloud", "Data", "Technologies", "AI"),
        240_000,
    ),
    "Financial Services": (("Capital", "Financial", "Insurance", "Partners", "Finance", "Payments"), 420_000),
    "Healthcare": (("Health", "Medical", "Clinics", "Biotech", "Diagnostics", "Care"), 160_000),
    "Manufacturing": (
        ("Industries", "Manufacturing", "Components", "Machinery", "Materials", "Works"),
        220_000,
    ),
    "Retail": (("Retail", "Stores", "Outfitters", "Market", "Brands", "Goods"), 180_000),
    "Logistics": (("Logistics", "Freight", "Shipping", "Transport", "Supply"), 200_000),
    "Education": (("Learning", "Academy", "Education", "Tutoring"), 90_000),
    "Media": (("Media", "Studios", "Publishing", "Digital"), 210_000),
    "Telecommunications": (("Telecom", "Networks", "Communications", "Connect"), 380_000),
    "Energy": (("Energy", "Power", "Renewables", "Solar", "Grid"), 520_000),
    "Professional Services": (("Consulting", "Advisors", "Group", "Associates", "Solutions"), 150_000),
    "Hospitality": (("Hotels", "Hospitality", "Travel", "Resorts"), 70_000),
}

NAME_STEMS: tuple[str, ...] = _words(
    "Blue, North, Silver, Bright, Iron, Summit, Apex, Cedar, Harbor, Nova, Quantum, Vertex, Pioneer, "
    "Atlas, Meridian, Lumen, Crescent, Granite, Evergreen, Falcon, Orbit, Beacon, Cobalt, Maple, Redwood, "
    "Sterling, Swift, Tidal, Vivid, Willow, Zenith, Polar, Horizon, Keystone, Lighthouse, Copper, "
    "Emerald, Sapphire, Amber, Aurora, Boulder, Canyon, Ember, Fjord, Glacier, Helix, Indigo, Juniper, "
    "Kestrel, Lattice, Magnolia, Nimbus, Onyx, Pinnacle, Quarry, Riverstone, Sequoia, Terra, Umbra, "
    "Vantage, Westwind, Yellowstone, Brightwave, Clearpath, Driftwood, Everline, Foxglove, Goldcrest, "
    "Highland, Ironclad, Lakeshore, Moonstone, Northstar, Oakridge, Palisade, Quillon, Rosewood, "
    "Silverline, Trident, Upland, Velvet, Wavecrest, Alder, Bramble, Castle, Dune, Elm, Fern, Greystone, "
    "Hawthorn, Isle, Jade, Kingfisher, Larch, Mistral, Nordic, Opal, Prairie, Ridge, Saltmarsh, Thistle, "
    "Vale, Wren"
)

# Competitors of the (fictional) company running Leadflow: their staff sign up to spy.
COMPETITORS: tuple[tuple[str, str], ...] = (
    ("PipelineForge", "pipelineforge.io"),
    ("FunnelHub", "funnelhub.co"),
    ("LeadLoop", "leadloop.app"),
)

# ------------------------------------------------------------------------------------- roles

# Buying committee: (buying role, title, seniority, department). Seniorities use the vocabulary
# of leadflow.core.identity.SENIORITIES and match what its title inference would say.
TITLES: tuple[tuple[str, str, str, str], ...] = (
    ("decision_maker", "Chief Executive Officer", "executive", "Executive"),
    ("decision_maker", "Co-Founder & CEO", "executive", "Executive"),
    ("decision_maker", "Chief Revenue Officer", "executive", "Sales"),
    ("decision_maker", "Chief Marketing Officer", "executive", "Marketing"),
    ("decision_maker", "CFO", "executive", "Finance"),
    ("decision_maker", "CTO", "executive", "Engineering"),
    ("decision_maker", "CIO", "executive", "IT"),
    ("decision_maker", "VP of Sales", "vp", "Sales"),
    ("decision_maker", "VP Marketing", "vp", "Marketing"),
    ("decision_maker", "Head of Revenue Operations", "vp", "Revenue Operations"),
    ("decision_maker", "VP of Customer Success", "vp", "Customer Success"),
    ("decision_maker", "Head of Growth", "vp", "Marketing"),
    ("influencer", "Director of Demand Generation", "director", "Marketing"),
    ("influencer", "Sales Director", "director", "Sales"),
    ("influencer", "Director of IT", "director", "IT"),
    ("influencer", "Marketing Operations Manager", "manager", "Marketing"),
    ("influencer", "Revenue Operations Manager", "manager", "Revenue Operations"),
    ("influencer", "Sales Operations Manager", "manager", "Sales"),
    ("influencer", "IT Manager", "manager", "IT"),
    ("influencer", "Procurement Manager", "manager", "Finance"),
    ("influencer", "Team Lead, Inside Sales", "manager", "Sales"),
    ("influencer", "Principal Solutions Architect", "senior", "Engineering"),
    ("user", "Senior Account Executive", "senior", "Sales"),
    ("user", "Senior Marketing Specialist", "senior", "Marketing"),
    ("user", "Marketing Specialist", "entry", "Marketing"),
    ("user", "Sales Development Associate", "entry", "Sales"),
    ("user", "Business Analyst", "entry", "Operations"),
    ("user", "CRM Administrator", "other", "IT"),
    ("user", "Account Executive", "other", "Sales"),
    ("user", "Customer Success Associate", "entry", "Customer Success"),
    ("user", "Marketing Coordinator", "entry", "Marketing"),
    ("user", "Junior Data Analyst", "entry", "Operations"),
    ("user", "Senior Software Engineer", "senior", "Engineering"),
)

# ------------------------------------------------------------------------------------- funnel

# Final stages: many early leads, few customers.
STAGE_WEIGHTS: tuple[tuple[Stage, float], ...] = (
    (Stage.NEW, 16),
    (Stage.COLD, 18),
    (Stage.MQL, 15),
    (Stage.SAL, 7),
    (Stage.SQL, 5),
    (Stage.OPPORTUNITY, 4),
    (Stage.CUSTOMER, 3),
    (Stage.NURTURE, 15),
    (Stage.UNQUALIFIED, 9),
    (Stage.BAD, 4),
    (Stage.RECYCLED, 4),
)
# Chance that a lead ending in a stage was sourced by sales (about a quarter overall).
SALES_SHARE: dict[Stage, float] = {
    Stage.NEW: 0.25,
    Stage.COLD: 0.35,
    Stage.MQL: 0.0,
    Stage.SAL: 0.4,
    Stage.SQL: 0.4,
    Stage.OPPORTUNITY: 0.4,
    Stage.CUSTOMER: 0.4,
    Stage.NURTURE: 0.15,
    Stage.UNQUALIFIED: 0.3,
    Stage.BAD: 0.15,
    Stage.RECYCLED: 0.25,
}

BAD_REASON_WEIGHTS: tuple[tuple[BadReason, float], ...] = (
    (BadReason.INVALID_CONTACT_DATA, 45),
    (BadReason.BAD_FIT, 25),
    (BadReason.DUPLICATE, 20),
    (BadReason.COMPETITOR, 10),
)

# ------------------------------------------------------------------------------------- sources

MARKETING_SOURCES: tuple[tuple[str, float], ...] = (
    ("webinar", 14),
    ("organic_search", 20),
    ("paid_search", 14),
    ("linkedin", 12),
    ("trade_show", 8),
    ("content_download", 16),
    ("website", 8),
    ("referral", 5),
    ("partner", 3),
)
SALES_SOURCES: tuple[tuple[str, float], ...] = (
    ("outbound", 70),
    ("referral", 12),
    ("trade_show", 10),
    ("partner", 8),
)

WEBINARS: tuple[str, ...] = (
    "Pipeline Hygiene 101",
    "Forecasting Without Spreadsheets",
    "Lead Scoring That Sales Trusts",
    "From MQL to Revenue: Closing the Loop",
    "RevOps Maturity Model Live",
    "GDPR-Proof Lead Capture",
)
ASSETS: tuple[tuple[str, str], ...] = (
    ("The RevOps Playbook", "/resources/revops-playbook"),
    ("2025 State of B2B Lead Management", "/resources/state-of-lead-management-2025"),
    ("Lead Scoring Template (XLSX)", "/resources/lead-scoring-template"),
    ("Buyer's Guide to Self-Hosted CRM", "/resources/self-hosted-crm-buyers-guide"),
    ("Sales & Marketing SLA Checklist", "/resources/sla-checklist"),
    ("Case Study: 3x Pipeline at Meridian Logistics", "/customers/meridian-logistics"),
)
TRADE_SHOWS: tuple[str, ...] = (
    "SaaStr Europa",
    "Web Summit",
    "Dreamforce",
    "B2B Marketing Expo",
    "RevOps Summit",
)
SEARCH_CAMPAIGNS: tuple[str, ...] = (
    "Brand",
    "CRM Alternatives",
    "Lead Management Software",
    "Self-Hosted CRM",
)
LINKEDIN_CAMPAIGNS: tuple[str, ...] = (
    "Lead Gen Form - RevOps Playbook",
    "Sponsored - Lead Scoring",
    "ABM - Enterprise",
)
PARTNERS: tuple[str, ...] = ("Northbeam Consulting", "Clearpath Integrators", "RevCraft Agency")
NEWSLETTERS: tuple[str, ...] = (
    "Leadflow Monthly",
    "Product Update",
    "Webinar Invitation",
    "New Guide: Lead Scoring",
    "Customer Story",
    "Nurture: Why self-hosted?",
    "Nurture: Integrations tour",
)

WEB_PAGES: tuple[tuple[str, float], ...] = (
    ("/", 12),
    ("/product", 10),
    ("/features/lead-scoring", 6),
    ("/features/pipeline", 6),
    ("/integrations", 5),
    ("/blog/what-is-an-mql", 8),
    ("/blog/bant-discovery-questions", 6),
    ("/blog/lead-vs-prospect-vs-opportunity", 8),
    ("/customers", 4),
    ("/resources", 5),
    ("/pricing", 9),
    ("/security", 3),
    ("/docs/getting-started", 4),
    ("/about", 2),
)
HOT_PAGES: tuple[tuple[str, float], ...] = (
    ("/pricing", 10),
    ("/security", 4),
    ("/docs/self-hosting", 4),
    ("/docs/api", 3),
    ("/compare", 3),
    ("/customers", 2),
)

# ------------------------------------------------------------------------------------- reasons

NURTURE_REASONS: tuple[str, ...] = (
    "Not ready to buy: budget opens next fiscal year",
    "Interested, but the timeline is more than six months out",
    "Early research stage; keep in the nurture track",
    "Evaluating after their current CRM contract renews",
    "Newsletter subscriber, no buying intent yet",
    "Champion left the project; re-engage later",
)
UNQUALIFIED_REASONS: tuple[str, ...] = (
    "No budget this year",
    "Needs a hosted-only vendor; self-hosting is not an option",
    "Team too small for a dedicated lead management tool",
    "No decision-making authority and no access to the buyer",
    "Already committed to a competitor for three years",
    "Need is not one the product meets (wants a ticketing system)",
)
RECYCLE_REASONS_LOST: tuple[str, ...] = (
    "Deal lost to a competitor; back to marketing",
    "No decision: project postponed",
    "Deal lost on price; revisit next budget cycle",
)
RECYCLE_REASONS_OTHER: tuple[str, ...] = (
    "Re-engaged after six months: new head of sales",
    "Company raised a new funding round; worth another look",
    "Returned to the funnel after nurture track completed",
)
BAD_REASON_TEXTS: dict[BadReason, tuple[str, ...]] = {
    BadReason.INVALID_CONTACT_DATA: (
        "Email bounced and the phone number is not in service",
        "Placeholder contact data from the form",
        "Disposable mailbox; no way to reach the person",
    ),
    BadReason.BAD_FIT: (
        "Student project, not a buyer",
        "Sole trader; far outside the ideal customer profile",
        "Looking for a consumer app, not a B2B CRM",
    ),
    BadReason.COMPETITOR: ("Works for a competitor", "Competitor researching our pricing"),
    BadReason.DUPLICATE: ("Duplicate of an existing lead",),
}
NEED_ANSWERS: dict[str, tuple[str, ...]] = {
    "need": (
        "Leads fall through the cracks between marketing and sales",
        "No visibility into which campaigns produce pipeline",
        "Spreadsheet-based lead routing does not scale",
        "Data must stay on our own servers for compliance",
        "Reps waste time on leads that are not a fit",
    ),
    "product_interest": (
        "Lead scoring",
        "Pipeline stages with evidence",
        "Web-to-lead forms",
        "API and webhooks",
    ),
    "solution": (
        "One place where both teams see the lead's history",
        "Automatic MQL hand-off with an SLA",
        "Self-hosted CRM behind our firewall",
        "Explainable scores the reps trust",
    ),
    "timeline": ("This quarter", "Next quarter", "Within 6 months", "Before the contract renewal"),
}
# Public web-to-lead forms: (name, default source).
WEB_FORMS: tuple[tuple[str, str], ...] = (
    ("Contact us", "website"),
    ("Newsletter signup", "organic_search"),
    ("Webinar registration", "webinar"),
    ("Gated content", "content_download"),
    ("Request a demo", "website"),
)
PLANS: tuple[str, ...] = ("Team", "Business", "Enterprise")
