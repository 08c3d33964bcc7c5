"""The realism parameters and data tables of the synthetic population: the domains, the
shares of each scenario and of each data-entry error, French family and given names with their
frequencies, birthplaces and residences. Plain data, read by :mod:`adapters.evaluation.population`.
"""

from __future__ import annotations

from datetime import date

__all__ = [
    "ABROAD_BIRTHPLACES",
    "AGE_BANDS",
    "AUTHORITIES",
    "AUTHORITY_OIDS",
    "BORN_ABROAD_QUALIFIED_FACTOR",
    "CITY_POSTCODES",
    "DOUBLE_NAME_SHARE",
    "DOUBTFUL_RATE",
    "DOUBTFUL_RATE_WITH_ERROR",
    "DUPLICATE_ERROR_RATE",
    "DUPLICATE_PERSON_SHARE",
    "ERROR_COUNT_WEIGHTS",
    "ERROR_GROUPS",
    "ERROR_KINDS",
    "ERROR_RATE",
    "ERROR_WEIGHTS",
    "ESTABLISHMENT_COUNT_WEIGHTS",
    "FAMILY_ENTRIES",
    "FAMILY_NAMES",
    "FEMALE_SHARE",
    "FRENCH_BIRTHPLACES",
    "GIVEN_POOLS",
    "HOMONYM_PERSON_SHARE",
    "INS_AUTHORITY",
    "INS_NAMESPACE",
    "INS_OID",
    "MARRIED_SHARE_22_TO_24",
    "MARRIED_SHARE_FROM_25",
    "MOVED_SHARE",
    "NANCY",
    "NEWBORN_CHRU_SHARE",
    "NEWBORN_PROVISIONAL_SHARE",
    "NEWBORN_SHARE",
    "NO_PHONE_SHARE",
    "ORIGIN_COUNTRIES",
    "PERSON_KINDS",
    "QUALIFIED_RATE",
    "RECORD_TAGS",
    "REFERENCE_DATE",
    "RESIDENCES",
    "STREETS",
    "TWIN_AGE_BANDS",
    "TWIN_PERSON_SHARE",
    "UNIDENTIFIED_PERSON_SHARE",
    "UNQUALIFIED_BIRTHPLACE_MISSING",
    "USED_NAME_RECORD_SHARE",
]

# --------------------------------------------------------------------------------------------
# Domains
# --------------------------------------------------------------------------------------------

AUTHORITIES: tuple[str, ...] = ("CHRU", "ICL", "MRUN", "CCEG")
AUTHORITY_OIDS: dict[str, str] = {
    "CHRU": "1.2.250.1.999.54.1",
    "ICL": "1.2.250.1.999.54.2",
    "MRUN": "1.2.250.1.999.54.3",
    "CCEG": "1.2.250.1.999.54.4",
}
INS_NAMESPACE = "ASIP-SANTE-INS-NIR"
INS_OID = "1.2.250.1.213.1.4.8"
INS_AUTHORITY = "INS-NIR"  # the code of that domain in the default authorities file

#: Day the population is observed: ages, "born in the last two years" and the latest possible
#: birth date are computed from it (never from today, so that a seed always gives the same rows).
REFERENCE_DATE = date(2025, 12, 31)

PERSON_KINDS: tuple[str, ...] = ("plain", "married", "twin", "homonym", "newborn", "unidentified")
RECORD_TAGS: tuple[str, ...] = ("duplicate", "provisional")
ERROR_KINDS: tuple[str, ...] = (
    "typo",            # one substitution, insertion, deletion or transposition in the family name
    "given_typo",      # the same, in the first given name
    "accent",          # diacritics lost (LEFEVRE for LEFÈVRE, Helene for Hélène)
    "latin1",          # a latin-1 system on the way: Œ turned into ?, É into E, then upper case
    "truncated",       # compound family name cut (MARTIN for MARTIN-DUPONT, GALL for LE GALL)
    "cut20",           # family name cut at 20 characters (the field of an older HIS)
    "separators",      # particle, apostrophe or hyphen written otherwise (DALMEIDA, LE-GALL)
    "used_as_birth",   # a married woman's used name entered as her birth name
    "names_swapped",   # first given name and family name entered in each other's field
    "given_order",     # given names in another order
    "given_first",     # only the first given name
    "given_dropped",   # the first given name left out, the others kept (the one used daily)
    "date_swap",       # day and month swapped
    "date_0101",       # 1 January of the right year (day unknown)
    "date_typo",       # one digit of the date mistyped
    "no_phone",        # phone missing
    "no_address",      # address missing
    "old_address",     # the address before the patient moved
    "no_sex",          # sex missing
)

# --------------------------------------------------------------------------------------------
# Realism parameters
# --------------------------------------------------------------------------------------------

#: Share of the persons in each scenario (the rest are plain or married adults and children).
UNIDENTIFIED_PERSON_SHARE = 0.006   # about 0.5 % of the CHRU and CCEG records
NEWBORN_SHARE = 0.02
TWIN_PERSON_SHARE = 0.01            # persons who are one of a twin pair (both are present)
HOMONYM_PERSON_SHARE = 0.005        # persons who are one of a planted homonym pair
# Two planted homonym pairs in five are born the same day (in different places).
#: Newborns registered first as BB/NOUVEAU-NE at the maternity, then named at the CHRU.
NEWBORN_PROVISIONAL_SHARE = 0.35
#: Other newborns also seen at the CHRU (paediatrics) besides the maternity.
NEWBORN_CHRU_SHARE = 0.25
#: Persons with a second record (another IPP) in one of their establishments.
DUPLICATE_PERSON_SHARE = 0.02

FEMALE_SHARE = 0.52
#: Persons born from 2005 on (when the law allowed it) who bear both parents' names.
DOUBLE_NAME_SHARE = 0.08
#: Women with a used name (spouse's family name): by age at the reference date.
MARRIED_SHARE_FROM_25 = 0.45
MARRIED_SHARE_22_TO_24 = 0.15
#: Records of a married woman that show her used name.
USED_NAME_RECORD_SHARE = 0.7
#: Persons who moved (their unqualified records may keep the old address).
MOVED_SHARE = 0.2
NO_PHONE_SHARE = 0.08

#: Number of establishments a person has records at: 1, 2, 3, 4.
ESTABLISHMENT_COUNT_WEIGHTS = (62, 27, 8, 3)

#: Chance that a record carries a qualified INS, by establishment.
QUALIFIED_RATE: dict[str, float] = {"CHRU": 0.56, "ICL": 0.60, "MRUN": 0.52, "CCEG": 0.44}
#: Factor applied to the rate above for persons born abroad (harder to qualify).
BORN_ABROAD_QUALIFIED_FACTOR = 0.6
#: Unqualified records with at least one data-entry error (duplicates: DUPLICATE_ERROR_RATE).
ERROR_RATE = 0.14
DUPLICATE_ERROR_RATE = 0.5
#: Number of errors of an erroneous record: 1, 2, 3.
ERROR_COUNT_WEIGHTS = (85, 13, 2)
#: Relative frequency of each error kind (among those applicable to the record).
ERROR_WEIGHTS: dict[str, float] = {
    "typo": 24, "given_typo": 12, "accent": 10, "latin1": 3, "truncated": 6, "cut20": 4,
    "separators": 5, "used_as_birth": 6, "names_swapped": 3, "given_order": 6,
    "given_first": 10, "given_dropped": 3, "date_swap": 8, "date_0101": 4, "date_typo": 7,
    "no_phone": 8, "no_address": 5, "old_address": 8, "no_sex": 4,
}
#: Unqualified records without birthplace (not an error: rarely asked before the INS).
UNQUALIFIED_BIRTHPLACE_MISSING = 0.25
#: Unqualified records flagged doubtful (DOUT): without, with an error.
DOUBTFUL_RATE = 0.02
DOUBTFUL_RATE_WITH_ERROR = 0.12

ERROR_GROUPS: dict[str, str] = {
    "typo": "family", "given_typo": "given_typo", "accent": "accent", "latin1": "accent",
    "truncated": "family", "cut20": "family", "separators": "family", "used_as_birth": "family",
    "names_swapped": "family", "given_order": "given", "given_first": "given",
    "given_dropped": "given", "date_swap": "date", "date_0101": "date",
    "date_typo": "date", "no_phone": "phone", "no_address": "address",
    "old_address": "address", "no_sex": "sex",
}

#: Age bands (first year, last year, weight) of the persons other than twins and newborns.
AGE_BANDS = ((2, 14, 9), (15, 29, 13), (30, 44, 16), (45, 59, 18), (60, 74, 23), (75, 89, 17),
              (90, 101, 4))
TWIN_AGE_BANDS = ((2, 14, 5), (15, 29, 3), (30, 40, 2))

# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------

# "weight origin: NAME, NAME, ..." Origins other than fr make a birth abroad more likely.
FAMILY_NAME_TABLE = """
200 fr: MARTIN
110 fr: THOMAS, SCHMITT, MULLER, MICHEL
90 fr: PETIT, BERNARD, ROBERT, RICHARD, KLEIN, DUBOIS
70 fr: LAURENT, MATHIEU, SIMON, DURAND, WEBER, COLIN, HUMBERT, MOREAU, FRANÇOIS, GEORGES,
  LEFEBVRE, LEROY, DIDIER, NICOLAS
50 fr: ANTOINE, PIERRE, GÉRARD, HENRY, MARCHAL, GIRARD, ROUX, DAVID, BERTRAND, MOREL, FOURNIER,
  BONNET, DUPONT, LAMBERT, MEYER, SCHNEIDER, WAGNER, FISCHER, HOFFMANN, JACQUES, CLAUDE, LOUIS,
  MASSON, PERRIN, NOËL, ADAM, VINCENT, ROUSSEAU, FONTAINE, BECKER, KOCH, GUERIN, ANDRÉ, MERCIER,
  GARNIER, CHEVALIER, CLÉMENT, HENRION, REMY, THIRIET, PIERSON, ÉTIENNE, MANGIN, GRANDJEAN,
  JACQUOT, POIROT
28 fr: FAURE, BLANC, BOYER, LEGRAND, GAUTHIER, ROBIN, MORIN, ROUSSEL, GAUTIER, MARCHAND, DUVAL,
  DENIS, DUMONT, MARIE, LEMAIRE, DUFOUR, MEUNIER, BRUN, BLANCHARD, GIRAUD, JOLY, RIVIÈRE, LUCAS,
  BRUNET, GAILLARD, BARBIER, ARNAUD, ROCHE, RENARD, ROY, LEROUX, CARON, PICARD, ROGER, AUBERT,
  LEMOINE, RENAUD, OLIVIER, PHILIPPE, BOURGEOIS, BENOÎT, LECLERC, GUILLAUME, LECOMTE, COLLIN,
  HUBERT, PARMENTIER, THIÉBAUT, VAUTRIN, VOIRIN, MANGEOT, MANGENOT, MOUGEL, MOUGENOT, PETITJEAN,
  PIERRAT, SIMONIN, THIERY, THOMASSIN, TOUSSAINT, VALENTIN, VILLAUME, CUNY, DEMANGE, DIDELOT,
  DIEUDONNÉ, FERRY, GEOFFROY, GRANDIDIER, HOUOT, JEANDEL, JEANDIDIER, MAIRE, MATHIS, MICHAUX,
  LALLEMAND, AUBRY, BAILLY, BRETON, CHRISTOPHE, CORDIER, MARTINET, SCHWARTZ, WEISS, SCHMIDT,
  KELLER, BAUER, LANG, WOLFF, BRAUN, KRAEMER, JUNG, ZIEGLER, HERRMANN, FRITSCH, SCHAEFFER, STEIN,
  GRAFF, HAAS, KIEFFER, HUSSON, GROSJEAN, GABRIEL, PAUL, MAURICE, DOMINIQUE
28 es: GARCIA
14 fr: LEBLANC, GUILLOT, PERRET, CHARPENTIER, BOUCHER, DUMAS, FLEURY, HÉBERT, MÉNARD, PRÉVOST,
  GRÉGOIRE, BÉNARD, LÉGER, VÉRON, FRÉMONT, THÉVENIN, BÉRANGER, COLLET, CARRÉ, LEDUC, HUET,
  MAILLARD, HUMBLOT, BARTHÉLEMY, CHAUVIN, DESCHAMPS, DUPUIS, BESSON, LEJEUNE, DUCHÊNE, GODARD,
  BARRÉ, LEVÊQUE, HOUILLON, CONRAD, GRANDCLAUDE, HACQUARD, JEANMAIRE, KREMER, LAMBOLEY,
  L'HUILLIER, MATHIOT, OUDIN, LÉONARD, GUYOT, COLSON, MASSIN, BOULANGER, CHARLIER, MARTEL,
  LEFORT, BOUVIER, CHAMPION, DROUOT, FRANÇOIS-XAVIER, HUMBLET, JEANJEAN, LAURENCIN, MONIER,
  PERNOT, PETITDEMANGE, RAULIN, RICHARDOT, SCHERER, STEFFEN, THOUVENIN, THOUVENOT, VIRION,
  WILHELM, ZIMMER, BRICE, CHARDIN, ÉVRARD, GÉRÔME, MÉTAYER, RÉMOND
14 it: BRUNO, FERRARI, ROSSI
10 pt: DA SILVA, DOS SANTOS, FERREIRA, PEREIRA, RODRIGUES, FERNANDES
10 es: MARTINEZ, LOPEZ, SANCHEZ, PEREZ, GONZALEZ, FERNANDEZ, RODRIGUEZ
10 ma: BENALI, HADDAD, MANSOURI, BRAHIMI, CHERIF
10 vn: NGUYEN
6 it: COLOMBO, RUSSO, BIANCHI, ROMANO, RICCI, MARINO, DE LUCA, ESPOSITO, CONTI, GALLO, LOMBARDI,
  SANTORO, CAPUTO, GRECO, BARBERO, DE ANGELIS, DELL'AQUILA, PELLEGRINI, MARCHETTI, VITALI
6 pl: KOWALSKI, NOWAK, WISNIEWSKI, LEWANDOWSKI, KAMINSKI, ZIELINSKI, SZYMANSKI, WOJCIK,
  KOWALCZYK, JANKOWSKI
6 pt: GONÇALVES, OLIVEIRA, DA COSTA, MARTINS, LOPES, SOUSA, CARVALHO, RIBEIRO, DE SOUSA,
  DE OLIVEIRA, TEIXEIRA, MENDES
6 ma: BENSAID, BOUZID, HAMIDI, KHELIFI, AMRANI, EL AMRANI, BEN SALAH, BOUAZIZ, BENHAMOU, SAIDI,
  ZERROUKI, MEDDAH, BELKACEM, EL IDRISSI, BENMOUSSA, AÏT ALI, OUALI, LAHLOU
6 tr: YILMAZ, KAYA, DEMIR, ÇELIK, ÖZTÜRK, ARSLAN, ŞAHIN
4 vn: TRAN, LE, PHAM, HOANG, VU
4 af: N'DIAYE, DIALLO, TRAORÉ, KEITA, DIOP, SOW, CISSÉ, KONATÉ, CAMARA, M'BAYE, KOUASSI, MBEMBA
4 fr: ZIMMERMANN, LE GALL, LE GOFF, LE ROUX, LE BRIS, LE CORRE, LE BIHAN, KERBRAT, DELACROIX,
  DESCHÂTEAUX, DE LA FONTAINE, DE SAINT-JUST, DU PUY, D'ARGENT, D'HAUSSONVILLE, VAN DEN BERGHE,
  LEFÈVRE, GÉRARDIN, MÉLINE, HÉRAUDEL, NICOLAY, JOLYET, STANISLAS
3 fr: MARTIN-DUPONT, BERNARD-LEROY, DUBOIS-MARCHAL, THOMAS-SCHMITT, LAMBERT-COLIN,
  PETIT-GIRARD, MULLER-WEBER, ROBERT-HOUDIN, KLEIN-HUMBERT, MOREAU-LEFEBVRE
"""

# Given names by sex and by the era of birth ("old": before 1960, "mid": 1960-1989, "recent":
# 1990 onwards), each list in decreasing order of frequency.
GIVEN_NAME_TABLE: dict[tuple[str, str], str] = {
    ("M", "old"): """Jean, Pierre, Michel, André, Jacques, Bernard, René, Claude, Louis, Marcel,
        Roger, Daniel, Robert, Alain, Henri, Georges, Paul, Gérard, Maurice, Raymond, Jean-Pierre,
        Jean-Claude, Joseph, François, Lucien, Roland, Christian, Guy, Serge, Jean-Marie,
        Jean-Louis, Jean-Paul, Jean-Jacques, Jean-François, Gilbert, Albert, Fernand, Émile,
        Gaston, Yves, Marc, Charles, Léon, Raoul, Edmond, Eugène, Hubert, Francis, Armand,
        Norbert, Jacky, Camille, Félix, Auguste, Jules, Victor, Marius, Gilles, Dominique,
        Patrick, Philippe, Jean-Michel, Jean-Luc, Noël, Bruno, Didier, Denis, Régis, Antoine,
        Léopold, Germain, Ernest, Adrien, Gabriel, Aimé, Clément, Alphonse, Gustave""",
    ("M", "mid"): """Christophe, Stéphane, Sébastien, Nicolas, Frédéric, David, Laurent, Olivier,
        Éric, Thierry, Pascal, Julien, Cédric, Vincent, Jérôme, Franck, Fabrice, Arnaud,
        Guillaume, Mathieu, Sylvain, Emmanuel, Ludovic, Benoît, Xavier, Grégory, Damien, Yannick,
        Anthony, Jérémy, Romain, Fabien, Mickaël, Jean-Baptiste, Alexandre, Thomas, Maxime,
        Florent, Loïc, Johann, Aurélien, Hervé, Didier, Bruno, Patrice, Lionel, Rémi, Samuel,
        Jean-Marc, Jean-Christophe, Jean-Philippe, Karim, Mohamed, Mehdi, Rachid, Yann, Joël,
        Jonathan, Kévin, Steve, Cyril, Mathias, Raphaël, Gaël, Hugues, Philippe, Patrick,
        Dominique, Gilles, Marc, Denis, Régis, Mustapha, Farid, Abdelkader, Ahmed""",
    ("M", "recent"): """Lucas, Hugo, Louis, Gabriel, Léo, Raphaël, Arthur, Jules, Adam, Nathan,
        Ethan, Paul, Mathis, Enzo, Tom, Théo, Noah, Timéo, Sacha, Nolan, Maël, Liam, Clément,
        Antoine, Baptiste, Quentin, Alexis, Valentin, Kylian, Dylan, Axel, Thibault, Corentin,
        Benjamin, Victor, Mathéo, Evan, Aaron, Noé, Marius, Gabin, Martin, Lenny, Robin, Malo,
        Tristan, Ayoub, Yanis, Ilyes, Rayan, Mohamed, Adrien, Florian, Pierre, Loris, Jordan,
        Killian, Bastien, Simon, Samuel, Romain, Esteban, Éloi, Côme, Augustin, Lorenzo, Eden,
        Isaac, Naël, Kaïs, Léon, Milo, Sohan, Amir, Thomas, Maxime, Alexandre, Nicolas, Julien""",
    ("F", "old"): """Marie, Jeanne, Françoise, Monique, Jacqueline, Nicole, Denise, Simone,
        Suzanne, Madeleine, Yvette, Christiane, Germaine, Marguerite, Paulette, Odette, Colette,
        Josette, Louise, Renée, Andrée, Micheline, Bernadette, Danielle, Jeannine, Ginette,
        Yvonne, Lucienne, Marcelle, Raymonde, Gisèle, Huguette, Claudine, Geneviève, Thérèse,
        Marie-Thérèse, Marie-Louise, Anne-Marie, Élisabeth, Arlette, Solange, Liliane, Mireille,
        Janine, Lucette, Paule, Irène, Henriette, Berthe, Alice, Juliette, Gabrielle, Jocelyne,
        Ghislaine, Marie-Josée, Marie-Paule, Marie-Claire, Catherine, Martine, Christine, Annie,
        Michèle, Chantal, Brigitte, Évelyne, Joëlle, Régine, Dominique, Anne, Hélène, Éliane,
        Georgette, Mauricette, Rolande, Fernande, Émilienne""",
    ("F", "mid"): """Nathalie, Isabelle, Sylvie, Valérie, Sandrine, Catherine, Stéphanie, Céline,
        Véronique, Christine, Sophie, Christelle, Laurence, Karine, Virginie, Aurélie, Caroline,
        Émilie, Julie, Audrey, Delphine, Corinne, Patricia, Florence, Séverine, Élodie, Mélanie,
        Carole, Laetitia, Anne-Sophie, Cécile, Magali, Nadia, Fatima, Samia, Sabrina, Vanessa,
        Jessica, Marion, Amandine, Anne-Laure, Claire, Agnès, Pascale, Béatrice, Fabienne,
        Muriel, Estelle, Angélique, Aline, Ludivine, Sarah, Laura, Pauline, Marine, Charlotte,
        Camille, Mathilde, Lucie, Élise, Anaïs, Justine, Alexandra, Myriam, Katia, Gaëlle, Maud,
        Marie-Laure, Marie-Pierre, Anne-Claire, Frédérique, Hélène, Martine, Brigitte,
        Dominique, Sandra, Emmanuelle, Marie-Christine, Marie-France""",
    ("F", "recent"): """Emma, Louise, Jade, Alice, Chloé, Lina, Léa, Rose, Anna, Mila, Inès,
        Ambre, Julia, Mia, Léna, Manon, Juliette, Lou, Zoé, Camille, Agathe, Jeanne, Lola, Éva,
        Romane, Clara, Sarah, Inaya, Nina, Margaux, Louna, Lucie, Charlotte, Océane, Maëlys,
        Lilou, Clémence, Héloïse, Anaïs, Mathilde, Lisa, Laura, Marie, Pauline, Morgane, Justine,
        Elsa, Capucine, Lana, Iris, Victoire, Gabrielle, Apolline, Yasmine, Salomé, Ninon, Nour,
        Alix, Assia, Célia, Noémie, Mélissa, Axelle, Coralie, Maëlle, Amélie, Marine, Aya, Maya,
        Élise, Adèle, Constance, Éléonore, Léonie, Margot, Lyna""",
}
ERAS = ("old", "mid", "recent")


def parse_family_names() -> tuple[tuple[str, float, str], ...]:
    """(name, weight, origin) of every line of the family name table."""
    entries: list[tuple[str, float, str]] = []
    blocks: list[str] = []
    for line in FAMILY_NAME_TABLE.strip().splitlines():
        if line.startswith(" ") and blocks:
            blocks[-1] += " " + line.strip()
        else:
            blocks.append(line.strip())
    for block in blocks:
        head, _, names = block.partition(":")
        weight, origin = head.split()
        for name in names.split(","):
            entries.append((name.strip(), float(weight), origin))
    return tuple(entries)


FAMILY_ENTRIES = parse_family_names()
#: Every family name the generator draws from (birth names, spouses' names).
FAMILY_NAMES: tuple[str, ...] = tuple(name for name, _, _ in FAMILY_ENTRIES)
GIVEN_POOLS: dict[tuple[str, str], tuple[str, ...]] = {
    key: tuple(n.strip() for n in text.split(",")) for key, text in GIVEN_NAME_TABLE.items()
}
#: Every given name of each sex ("M", "F"), without repetition.
GIVEN_NAMES: dict[str, tuple[str, ...]] = {
    sex: tuple(dict.fromkeys(n for era in ERAS for n in GIVEN_POOLS[(sex, era)]))
    for sex in ("M", "F")
}

# --------------------------------------------------------------------------------------------
# Places
# --------------------------------------------------------------------------------------------

# (INSEE code, weight) of birthplaces in France. Nancy's maternity dominates.
FRENCH_BIRTHPLACES: tuple[tuple[str, float], ...] = (
    ("54395", 40),   # Nancy
    ("54547", 3),    # Vandœuvre-lès-Nancy
    ("54329", 6),    # Lunéville
    ("54528", 5),    # Toul
    ("54339", 1.5),  # Malzéville
    ("54482", 1.5),  # Saint-Max
    ("54578", 1.5),  # Villers-lès-Nancy
    ("54304", 1.5),  # Laxou
    ("54274", 1.2),  # Jarville-la-Malgrange
    ("54357", 1),    # Maxéville
    ("54431", 3),    # Pont-à-Mousson
    ("54323", 2),    # Longwy
    ("54580", 1),    # Villerupt
    ("57463", 5),    # Metz
    ("57672", 2),    # Thionville
    ("57631", 1),    # Sarreguemines
    ("88160", 3),    # Épinal
    ("88413", 1.5),  # Saint-Dié-des-Vosges
    ("55029", 1.5),  # Bar-le-Duc
    ("55545", 1.5),  # Verdun
    ("75056", 3),    # Paris
    ("67482", 2),    # Strasbourg
    ("69123", 1),    # Lyon
    ("13055", 1),    # Marseille
    ("59350", 0.8),  # Lille
    ("51454", 1),    # Reims
    ("21231", 0.7),  # Dijon
    ("2A004", 0.3),  # Ajaccio
    ("2B033", 0.3),  # Bastia
)
# (INSEE country code, weight) of births abroad for names of French origin.
ABROAD_BIRTHPLACES: tuple[tuple[str, float], ...] = (
    ("99350", 3),    # Morocco
    ("99352", 3),    # Algeria
    ("99351", 1.5),  # Tunisia
    ("99127", 1.5),  # Italy
    ("99134", 1),    # Spain
    ("99139", 1.5),  # Portugal
    ("99243", 0.7),  # Vietnam
    ("99122", 0.7),  # Poland
    ("99109", 1),    # Germany
    ("99131", 0.7),  # Belgium
    ("99208", 1),    # Turkey
    ("99341", 0.6),  # Senegal
    ("99335", 0.4),  # Mali
    ("99322", 0.5),  # Cameroon
    ("99326", 0.4),  # Côte d'Ivoire
)
# Countries of birth by name origin.
ORIGIN_COUNTRIES: dict[str, tuple[tuple[str, float], ...]] = {
    "it": (("99127", 1),),
    "pl": (("99122", 1),),
    "pt": (("99139", 1),),
    "es": (("99134", 1),),
    "ma": (("99350", 4), ("99352", 4), ("99351", 2)),
    "vn": (("99243", 1),),
    "af": (("99341", 3), ("99335", 2), ("99322", 2), ("99326", 2)),
    "tr": (("99208", 1),),
}
NANCY = "54395"

# (city, postcodes, weight) of the places of residence.
RESIDENCES: tuple[tuple[str, tuple[str, ...], float], ...] = (
    ("Nancy", ("54000", "54100"), 30),
    ("Vandœuvre-lès-Nancy", ("54500",), 8),
    ("Laxou", ("54520",), 4),
    ("Villers-lès-Nancy", ("54600",), 4),
    ("Maxéville", ("54320",), 2.5),
    ("Malzéville", ("54220",), 2.5),
    ("Saint-Max", ("54130",), 2.5),
    ("Jarville-la-Malgrange", ("54140",), 2.5),
    ("Essey-lès-Nancy", ("54270",), 2.2),
    ("Tomblaine", ("54510",), 2.2),
    ("Heillecourt", ("54180",), 1.5),
    ("Ludres", ("54710",), 1.5),
    ("Champigneulles", ("54250",), 2),
    ("Seichamps", ("54280",), 1.5),
    ("Pompey", ("54340",), 1.2),
    ("Frouard", ("54390",), 1.5),
    ("Liverdun", ("54460",), 1.2),
    ("Neuves-Maisons", ("54230",), 1.5),
    ("Dombasle-sur-Meurthe", ("54110",), 2),
    ("Saint-Nicolas-de-Port", ("54210",), 2),
    ("Lunéville", ("54300",), 4),
    ("Toul", ("54200",), 3.5),
    ("Pont-à-Mousson", ("54700",), 3),
    ("Longwy", ("54400",), 1),
    ("Metz", ("57000",), 1.5),
    ("Épinal", ("88000",), 1),
    ("Saint-Dié-des-Vosges", ("88100",), 0.7),
    ("Bar-le-Duc", ("55000",), 0.6),
    ("Verdun", ("55100",), 0.5),
)
#: The postcodes of every city of residence.
CITY_POSTCODES: dict[str, tuple[str, ...]] = {city: codes for city, codes, _ in RESIDENCES}

STREETS: tuple[str, ...] = (
    "rue Stanislas", "rue Saint-Dizier", "rue Saint-Jean", "rue des Dominicains",
    "rue de la Visitation", "avenue Foch", "boulevard Lobau", "rue Jeanne d'Arc",
    "avenue du Général Leclerc", "rue de Metz", "rue Charles III", "rue Gambetta",
    "rue des Carmes", "cours Léopold", "rue de Laxou", "avenue de Boufflers", "rue de Mon Désert",
    "boulevard d'Haussonville", "rue Henri Poincaré", "place Carnot", "rue de la Hache",
    "rue Jean Jaurès", "rue Victor Hugo", "rue de la République", "rue du Maréchal Foch",
    "avenue de la Libération", "rue Pasteur", "rue des Jardiniers", "rue Émile Gallé",
    "rue Saint-Georges", "rue de Nabécor", "avenue Anatole France", "rue du Général Custine",
    "rue des Tiercelins", "rue Isabey", "rue de Villers", "rue de Toul", "route de Mirecourt",
    "allée des Tilleuls", "rue des Lilas", "impasse des Roses", "rue du Moulin",
    "rue de l'Église", "rue des Écoles", "Grande Rue", "rue de la Gare", "chemin des Vignes",
    "rue des Tulipes", "rue de la Paix", "rue Clemenceau", "rue du 8 Mai 1945",
    "rue du 11 Novembre", "square des Peupliers", "avenue de Brabois", "rue Jacques Callot",
    "rue Lyautey", "rue des Mésanges", "rue du Haut du Lièvre", "avenue Raymond Pinchard",
    "rue de Malzéville", "rue du Placieux", "rue de la Craffe", "rue Mazagran",
)
