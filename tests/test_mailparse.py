"""hub.mail.parse: real-client sample mails, body cleanup, subject grammar, number addresses."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.errors import ConfigError
from hub.mail.parse import (
    DEFAULT_DISCLAIMER_PATTERNS,
    DEFAULT_SIGNATURE_PATTERNS,
    Attachment,
    BodyOptions,
    ParsedMail,
    SubjectGrammar,
    extract_reply_text,
    extract_text,
    html_to_text,
    normalize_whitespace,
    numbers_from_addresses,
    parse_mail,
    parse_subject,
    strip_prefixes,
    unflow,
)
from hub.mail.parse.charset import decode_bytes, decode_words

MAIL_DIR = Path(__file__).parent / "data" / "mail"
INTAKE_DOMAINS = ["sms.example.com"]


def load(name: str) -> ParsedMail:
    return parse_mail((MAIL_DIR / name).read_bytes())


@dataclass(frozen=True)
class Sample:
    """What a sample mail must give: its SMS text and its subject's parts."""

    text: str
    numbers: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    lists: list[str] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


SAMPLES: dict[str, Sample] = {
    # Outlook 16 desktop: windows-1252 quoted-printable (’ € – are bytes 0x92 0x80 0x96),
    # Word HTML with MsoNormal, "-----Original Message-----" reply.
    "outlook_desktop_reply.eml": Sample(
        text=(
            "Hello Mrs Durand,\n\n"
            "Yes, we\u2019ve moved your appointment to Thursday 26 November at 9:30. "
            "The consultation fee is 25 \u20ac as usual.\n\n"
            "Kind regards,\n"
            "Sarah \u2013 Cabinet Martin"
        ),
        unknown=["SMS", "from", "Jeanne", "Durand"],
        warnings=["removed quoted history"],
    ),
    # Outlook on the web: "________________________________" + From:/Sent: block;
    # the subject keeps words next to two differently grouped numbers.
    "owa_reply.eml": Sample(
        text=(
            "Bonjour,\n\n"
            "Votre vaccin antigrippal est disponible au cabinet. Vous pouvez passer sans "
            "rendez-vous du lundi au vendredi de 9h \u00e0 12h.\n\n"
            "Cabinet Martin"
        ),
        numbers=["06 98 76 54 32", "+33 7 81 22 33 44"],
        unknown=["Rappel", "vaccin"],
        warnings=["removed quoted history"],
    ),
    # Gmail: "-- " signature (gmail_signature in HTML) and the attribution wrapped
    # over two lines ("… <jeanne.durand@example.fr>" / "wrote:").
    "gmail_reply.eml": Sample(
        text="Bonjour Madame Durand,\n\nC'est not\u00e9 pour jeudi 26 \u00e0 9h30. \u00c0 jeudi !",
        unknown=["SMS", "from", "Jeanne", "Durand"],
        warnings=["removed quoted history", "removed a signature"],
    ),
    # iPhone Mail in English: Apple-Mail boundary, "Sent from my iPhone", the
    # attribution inside the quote, blockquote type=cite in HTML, a BOM in the quote.
    "apple_iphone_reply.eml": Sample(
        text="Yes, 3pm works. Please bring your carte Vitale.",
        numbers=["+33 6 98 76 54 32"],
        unknown=["SMS", "from"],
        warnings=["removed quoted history", "removed a signature"],
    ),
    # Thunderbird: format=flowed 8bit, bottom-posted under "Le … a écrit :",
    # "-- " signature, moz-cite-prefix and moz-signature in HTML.
    "thunderbird_bottom_flowed.eml": Sample(
        text=(
            "Bonjour Madame Durand, c'est possible : nous vous attendons jeudi 26 novembre "
            "\u00e0 9 h 30 au cabinet, 12 rue de la R\u00e9publique, 2e \u00e9tage."
        ),
        unknown=["SMS", "from", "Jeanne", "Durand"],
        warnings=[
            "removed quoted history",
            "took the text written below the quote",
            "removed a signature",
        ],
    ),
    # iPhone Mail in French, text/plain only: "Envoyé de mon iPhone",
    # "> Le 24 nov. 2026 à 10:02, … a écrit :" with a non-breaking space.
    "iphone_fr_reply.eml": Sample(
        text="Bonjour, c\u2019est confirm\u00e9 pour demain 10h. Bonne journ\u00e9e.",
        unknown=["SMS", "de", "Jeanne", "Durand"],
        warnings=["removed quoted history", "removed a signature"],
    ),
    # Samsung Email: base64 bodies, "Envoyé depuis mon appareil Galaxy",
    # "-------- Message d'origine --------" with French headers; numbers in addresses.
    "samsung_android_numbers.eml": Sample(
        text=(
            "Le cabinet sera ferm\u00e9 le vendredi 27 novembre. "
            "En cas d'urgence, appelez le 15.\n\nDr Martin"
        ),
        unknown=["Horaires", "de", "garde"],
        warnings=["removed quoted history", "removed a signature"],
    ),
    # German Outlook: windows-1252 bytes („ “ – €) labelled iso-8859-1, "Von:/Gesendet:"
    # block without separator, "AW: WG:" prefix chain, German number groupings.
    "outlook_de_reply.eml": Sample(
        text=(
            "Hallo Frau Becker,\n\n"
            "Ihr Termin am Donnerstag um 9:30 Uhr ist best\u00e4tigt. Bitte seien Sie "
            "\u201ep\u00fcnktlich\u201c \u2013 die Geb\u00fchr f\u00fcr vers\u00e4umte Termine "
            "betr\u00e4gt 25 \u20ac.\n\n"
            "Mit freundlichen Gr\u00fc\u00dfen\n"
            "Praxis Dr. Weber"
        ),
        numbers=["0151 12345678", "+49 171 2345678"],
        warnings=["removed quoted history"],
    ),
    # HTML only (PHPMailer): head/style/script dropped, entities, &nbsp;, a list, a link;
    # the subject carries only list and fixed tokens.
    "html_only.eml": Sample(
        text=(
            "Bonjour,\n\n"
            "La campagne de vaccination contre la grippe commence le lundi 30 novembre.\n\n"
            "- Sans rendez-vous le matin\n"
            "- Sur rendez-vous l'apr\u00e8s-midi\n\n"
            "Prenez rendez-vous sur notre site (https://rdv.cabinet-martin.example/grippe) "
            "ou au 04 78 00 00 00.\n\n"
            "Cabinet Martin & associ\u00e9s"
        ),
        lists=["vaccination-2026"],
        tokens={"sender": "CABMARTIN", "type": "marketing"},
        warnings=["converted HTML to text"],
    ),
    # RFC 2047: a UTF-8 B word next to an iso-8859-1 Q word, folded, plus a pin token.
    "rfc2047_subject.eml": Sample(
        text=(
            "Votre vaccin est arriv\u00e9 au cabinet. "
            "Vous pouvez venir le chercher d\u00e8s demain."
        ),
        numbers=["06 12 34 56 78", "+33 7 81 22 33 44"],
        unknown=["Vaccin", "grippe", "\u2014", "s\u00e9rum", "re\u00e7u"],
        tokens={"pin": "4821"},
    ),
    # Gmail with base64 UTF-8: emoji (a ZWJ family kept whole), zero-width spaces,
    # a non-breaking space, trailing spaces and a run of blank lines.
    "base64_utf8_emoji.eml": Sample(
        text=(
            "Joyeux anniversaire ! \U0001f389\n\n"
            "Toute l\u2019\u00e9quipe du cabinet \U0001f468\u200d\U0001f469\u200d\U0001f467 "
            "vous souhaite une belle journ\u00e9e."
        ),
        numbers=["+33612345678", "0698765432"],
    ),
    # A PHP script: iso-8859-1 8bit body, LF line endings, numbers split by ";".
    "latin1_8bit.eml": Sample(
        text=(
            "Rappel : votre rendez-vous chez le Dr Martin est pr\u00e9vu le mercredi "
            "25 novembre \u00e0 14h15.\n"
            "Merci de pr\u00e9venir en cas d'emp\u00eachement."
        ),
        numbers=["0612345678", "0698765432"],
    ),
    # Exchange gateway disclaimers in English and French plus an eco footer.
    "disclaimer.eml": Sample(
        text=(
            "Bonjour,\n\n"
            "Votre dossier est complet. Le chirurgien vous recevra le 3 d\u00e9cembre "
            "\u00e0 11h.\n\n"
            "Secr\u00e9tariat de chirurgie\n"
            "Clinique du Parc"
        ),
        numbers=["07 81 22 33 44"],
        warnings=["removed a legal disclaimer"],
    ),
    # Exchange structure mixed(related(alternative(plain, html), logo), pdf): the
    # logo's "[cid:…]" placeholder goes, both parts are listed and reported.
    "pdf_attachment.eml": Sample(
        text=(
            "Bonjour Monsieur Roux,\n\n"
            "Votre compte-rendu d\u2019examen est disponible. "
            "Vous le trouverez en pi\u00e8ce jointe.\n\n"
            "Cordialement,\n"
            "Le secr\u00e9tariat"
        ),
        numbers=["06 12 34 56 78"],
        warnings=["attachment image001.png ignored", "attachment compte-rendu.pdf ignored"],
    ),
    # A monitoring script: no MIME headers at all, raw UTF-8 in Subject and body,
    # a header line without a colon, an unreadable Date, a "-- " signature.
    "malformed_no_content_type.eml": Sample(
        text=(
            "Sauvegarde \u00e9chou\u00e9e sur srv-dossiers \u00e0 13:30 \u2014 "
            "v\u00e9rifiez le disque."
        ),
        numbers=["0612345678"],
        unknown=["Alerte", "sauvegarde", "\u00e9chou\u00e9e"],
        warnings=[
            "ignored a malformed header line: 'this line is not a header'",
            "removed a signature",
            "unreadable Date header: 'mardi 24 novembre 2026 13:30'",
        ],
    ),
    # Apple Mail on macOS forwarding a mail to a number address: the forwarded
    # message is kept ("Begin forwarded message:"; blockquote type=cite in HTML).
    "apple_mail_forward.eml": Sample(
        text=(
            "\u00c0 transmettre, merci.\n\n"
            "Begin forwarded message:\n\n"
            "From: Dr Martin <dr.martin@cabinet-martin.example>\n"
            "Subject: Fermeture exceptionnelle\n"
            "Date: 23 November 2026 at 18:30:12 CET\n"
            "To: Accueil <accueil@cabinet-martin.example>\n\n"
            "Le cabinet sera ferm\u00e9 vendredi 27 novembre. Les rendez-vous sont report\u00e9s."
        ),
        unknown=["Fermeture", "exceptionnelle"],
        warnings=["kept a forwarded message"],
    ),
    # Outlook for iOS in French: "Get Outlook for iOS<…>" then "____" + "De :/Envoyé :".
    "outlook_ios_reply.eml": Sample(
        text="Parfait, merci. Nous vous rappelons demain matin.",
        numbers=["+33 6 12 34 56 78"],
        unknown=["SMS", "from"],
        warnings=["removed a signature", "removed quoted history"],
    ),
    # A PNG uuencoded in the text (old clients, fax gateways): an attachment, not text.
    "uuencoded_attachment.eml": Sample(
        text="Voici le plan d'acces au cabinet.",
        numbers=["06 12 34 56 78"],
        warnings=["attachment plan.png ignored"],
    ),
    # RFC 5322's obsolete syntax: blanks before the colon of a header name.
    "obsolete_header_syntax.eml": Sample(
        text="Le rendez-vous est maintenu.",
        numbers=["0612345678"],
    ),
    # "Name wrote:" with no date above a quote: no text of the sender's.
    "attribution_without_date.eml": Sample(
        text="Merci de rappeler le cabinet.",
        numbers=["0612345678"],
        warnings=["removed quoted history"],
    ),
    # UTF-7 (old Outlook Express settings) and a "--" delimiter without its space.
    "utf7_body.eml": Sample(
        text="R\u00e9union d\u00e9plac\u00e9e \u00e0 10h.",
        numbers=["0612345678"],
        warnings=["removed a signature"],
    ),
}


def test_every_sample_file_has_expectations() -> None:
    assert sorted(path.name for path in MAIL_DIR.glob("*.eml")) == sorted(SAMPLES)
    assert len(SAMPLES) >= 14


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_text_and_subject(name: str) -> None:
    expected = SAMPLES[name]
    mail = load(name)
    assert mail.text == expected.text
    parts = parse_subject(mail.subject)
    assert parts.numbers == expected.numbers
    assert parts.unknown == expected.unknown
    assert parts.lists == expected.lists
    assert parts.tokens == expected.tokens
    assert sorted(mail.warnings) == sorted(expected.warnings)


WITH_HTML_ALTERNATIVE = [
    "apple_iphone_reply.eml",
    "apple_mail_forward.eml",
    "base64_utf8_emoji.eml",
    "gmail_reply.eml",
    "outlook_de_reply.eml",
    "outlook_desktop_reply.eml",
    "outlook_ios_reply.eml",
    "owa_reply.eml",
    "pdf_attachment.eml",
    "samsung_android_numbers.eml",
    "thunderbird_bottom_flowed.eml",
]


@pytest.mark.parametrize("name", WITH_HTML_ALTERNATIVE)
def test_html_alternative_gives_the_same_text(name: str) -> None:
    """The HTML converter and the plain-text rules agree on every real client's output."""
    mail = load(name)
    assert mail.body_type == "text/plain"
    message = BytesParser(policy=policy.default).parsebytes((MAIL_DIR / name).read_bytes())
    html_parts = [part for part in message.walk() if part.get_content_type() == "text/html"]
    payload = html_parts[0].get_payload(decode=True)
    assert isinstance(payload, bytes)
    html = decode_bytes(payload, html_parts[0].get_content_charset()).text
    assert extract_text(html, html=True).text == mail.text
    assert extract_text(html, html=True, reply=True).text == extract_reply_text(mail)


@pytest.mark.parametrize(
    "name",
    [
        "outlook_desktop_reply.eml",
        "owa_reply.eml",
        "gmail_reply.eml",
        "apple_iphone_reply.eml",
        "thunderbird_bottom_flowed.eml",
        "iphone_fr_reply.eml",
        "samsung_android_numbers.eml",
        "outlook_de_reply.eml",
        "outlook_ios_reply.eml",
    ],
)
def test_reply_text_of_replies_is_the_new_text(name: str) -> None:
    raw = (MAIL_DIR / name).read_bytes()
    assert extract_reply_text(raw) == SAMPLES[name].text
    assert extract_reply_text(parse_mail(raw)) == SAMPLES[name].text


def test_reply_text_keeps_a_forwarded_message() -> None:
    # What the sender chose to pass on goes to the phone too (as in mail intake).
    text = extract_reply_text(load("apple_mail_forward.eml"))
    assert text.startswith("\u00c0 transmettre, merci.\n\nBegin forwarded message:")
    assert text.endswith("Les rendez-vous sont report\u00e9s.")


def test_outlook_desktop_headers() -> None:
    mail = load("outlook_desktop_reply.eml")
    assert mail.message_id == (
        "PR3P192MB07168F2A1C3D4E5F6A7B8C9DA1B2C@PR3P192MB0716.EURP192.PROD.OUTLOOK.COM"
    )
    assert mail.from_addr == "sarah.lambert@cabinet-martin.example"
    assert mail.from_display == "Sarah Lambert"
    assert mail.to == ["reply+7f3a9c@hub.example.com"]
    assert mail.cc == [] and mail.reply_to == []
    assert mail.subject == "RE: SMS from Jeanne Durand"
    assert mail.date == datetime(2026, 11, 24, 9, 47, 12, tzinfo=UTC)
    assert mail.in_reply_to == "sms.7f3a9c.20261124T090200Z@hub.example.com"
    assert mail.references == ["sms.7f3a9c.20261124T090200Z@hub.example.com"]
    assert mail.html_only is False
    assert mail.attachments == []
    assert mail.body_type == "text/plain"
    assert mail.get_header("x-mailer") == ["Microsoft Outlook 16.0"]
    assert mail.get_header("Thread-Topic") == ["SMS from Jeanne Durand"]
    assert mail.get_header("X-Missing") == []
    [auth] = mail.authentication_results
    assert auth.startswith("mx1.hub.example.com;\tdkim=pass header.d=cabinet-martin.example")
    assert "dmarc=pass" in auth and "\n" not in auth


def test_rfc2047_display_name_and_domain_case() -> None:
    mail = load("rfc2047_subject.eml")
    assert mail.from_display == "H\u00e9l\u00e8ne Lef\u00e8vre"
    assert mail.from_addr == "helene.lefevre@cabinet-martin.example"
    assert mail.subject == (
        "Vaccin grippe \u2014 s\u00e9rum re\u00e7u ; pin:4821 ; 06 12 34 56 78, +33 7 81 22 33 44"
    )
    assert mail.date is not None
    assert mail.date.utcoffset() == timedelta(hours=1)


def test_malformed_mail_keeps_the_headers_after_the_broken_line() -> None:
    mail = load("malformed_no_content_type.eml")
    assert mail.message_id == "20261124123002.1F2E3D4C5B@monitor.cabinet-martin.example"
    assert mail.from_addr == "supervision@monitor.cabinet-martin.example"
    assert mail.subject == "Alerte sauvegarde \u00e9chou\u00e9e 0612345678"
    assert mail.date is None
    assert mail.get_header("X-Script") == ["backup-check.sh"]


def test_pdf_attachment_listed() -> None:
    mail = load("pdf_attachment.eml")
    assert mail.attachments == [
        Attachment("image001.png", "image/png", 70),
        Attachment("compte-rendu.pdf", "application/pdf", 193),
    ]
    filename, content_type, size = mail.attachments[1]
    assert (filename, content_type, size) == ("compte-rendu.pdf", "application/pdf", 193)


def test_html_only_flag() -> None:
    mail = load("html_only.eml")
    assert mail.html_only is True
    assert mail.body_type == "text/html"
    assert mail.body.lstrip().startswith("<!DOCTYPE html>")


def test_number_in_address_samsung() -> None:
    mail = load("samsung_android_numbers.eml")
    numbers, others = numbers_from_addresses(mail.to + mail.cc, INTAKE_DOMAINS)
    assert numbers == ["06.12.34.56.78", "+33698765432", "0033781223344", "33745566778"]
    assert others == ["accueil@cabinet-martin.example"]


def test_number_in_address_apple_forward() -> None:
    mail = load("apple_mail_forward.eml")
    assert numbers_from_addresses(mail.to, INTAKE_DOMAINS) == (["+33612345678"], [])


# -- number-in-address -----------------------------------------------------------------


def test_numbers_from_addresses_forms() -> None:
    numbers, others = numbers_from_addresses(
        [
            "+33612345678@sms.example.com",
            "Jeanne <0033698765432@SMS.Example.COM>",
            "33781223344@sms.example.com",
            "0612345678@sms.example.com.",
            "06-98-76-54-32@sms.example.com",
            '"06 12 34 56 78"@sms.example.com',
            "+33612345678@sms.example.com",
            "sms@sms.example.com",
            "0612345678@other.example.com",
            "accueil@cabinet-martin.example",
            "+33abc@sms.example.com",
        ],
        ["sms.example.com"],
    )
    assert numbers == [
        "+33612345678",
        "0033698765432",
        "33781223344",
        "0612345678",
        "06-98-76-54-32",
        "06 12 34 56 78",
    ]
    assert others == [
        "sms@sms.example.com",
        "0612345678@other.example.com",
        "accueil@cabinet-martin.example",
        "+33abc@sms.example.com",
    ]


def test_numbers_from_addresses_without_intake_domain() -> None:
    assert numbers_from_addresses(["0612345678@sms.example.com"], []) == (
        [],
        ["0612345678@sms.example.com"],
    )


# -- body: quotes, signatures, disclaimers ----------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "Merci\n\nAm 24.11.2026 um 10:02 schrieb Jeanne Durand <j@example.de>:\n> Hallo",
        "Merci\n\nEl mar, 24 nov 2026 a las 10:02, Jeanne (<j@example.es>) escribi\u00f3:\n> Hola",
        "Merci\n\nIl giorno mar 24 nov 2026 alle ore 10:02 Jeanne <j@x.it> ha scritto:\n> Ciao",
        "Merci\n\nOp di 24 nov 2026 om 10:02 schreef Jeanne Durand <j@example.nl>:\n> Hoi",
        "Merci\n\nEm ter., 24 de nov. de 2026 \u00e0s 10:02, Jeanne <j@x.pt> escreveu:\n> Ol\u00e1",
        "Merci\n\nLe mar. 24 nov. 2026 \u00e0 10:02, Jeanne Durand <jeanne@example.fr> a\n"
        "\u00e9crit :\n\n> vieux",
        'Merci\n\nOn 24/11/2026, 10:02, "Jeanne Durand" <j@example.fr> wrote:\n\nold',
        "Merci\n\n-----Message d'origine-----\nDe : Jeanne\nEnvoy\u00e9 : mardi\n\nold",
        "Merci\n\n-----Urspr\u00fcngliche Nachricht-----\nVon: Jeanne\nGesendet: Di\n\nalt",
        "Merci\n\n-------- Original message --------\nFrom: Jeanne\nDate: 24/11/2026\n\nold",
        "Merci\n\nFrom: Jeanne Durand <j@example.fr>\nSent: Tuesday, November 24, 2026\n\nold",
        "Merci\n\n*From:* Jeanne Durand <j@example.fr>\n*Date:* Tue, Nov 24, 2026\n\nold",
        "Merci\n\n________________________________\n\nDe : Jeanne\nEnvoy\u00e9 : mardi\n\nold",
        "Merci\n> quoted\n>> deeper",
    ],
)
def test_quoted_history_removed(body: str) -> None:
    result = extract_text(body)
    assert result.text == "Merci"
    assert "removed quoted history" in result.warnings


def test_sentence_starting_like_a_header_is_kept() -> None:
    body = "On time, thanks.\nOn Tue, Nov 24, 2026 at 10:02 AM Jeanne <j@x.fr> wrote:\n> old"
    assert extract_text(body).text == "On time, thanks."
    assert extract_text("On Monday I wrote: see you soon").text == "On Monday I wrote: see you soon"


def test_underscores_without_header_are_kept() -> None:
    body = "Agenda\n____________________\nLundi 9h"
    assert extract_text(body).text == body


def test_forward_kept_and_cut_in_reply() -> None:
    body = (
        "Voil\u00e0\n\n---------- Forwarded message ---------\nFrom: A <a@x.fr>\n"
        "Date: Tue, Nov 24, 2026 at 10:02 AM\nSubject: Horaires\n\nLe texte transf\u00e9r\u00e9\n"
        "-- \nsa signature"
    )
    kept = extract_text(body)
    assert kept.text == normalize_whitespace(body)
    assert kept.warnings == ["kept a forwarded message"]
    assert extract_text(body, reply=True).text == normalize_whitespace(body)


def test_outlook_separator_is_a_forward_when_the_subject_says_so() -> None:
    body = (
        "FYI\n\n________________________________\nDe : Paul\nEnvoy\u00e9 : mardi\n"
        "\u00c0 : Accueil\nObjet : Horaires\n\nTexte"
    )
    assert extract_text(body).text == "FYI"
    assert extract_text(body, forward=True).text == body


def test_forward_subject_reaches_the_body_rules() -> None:
    raw = (
        b"From: a@cabinet-martin.example\r\nTo: sms@hub.example.com\r\n"
        b"Subject: TR: 0612345678\r\n\r\nA transmettre\r\n\r\n"
        b"-----Original Message-----\r\nFrom: Paul\r\nSent: Tuesday\r\n\r\nFermeture vendredi\r\n"
    )
    mail = parse_mail(raw)
    assert mail.text.endswith("Fermeture vendredi")
    assert extract_reply_text(mail) == "A transmettre"


def test_reply_mode_cuts_at_the_first_quoted_line() -> None:
    body = "Oui\n> question ?\nprecision\n> autre"
    assert extract_text(body).text == "Oui\nprecision"
    assert extract_text(body, reply=True).text == "Oui"
    assert extract_reply_text(body) == "Oui"


def test_bottom_posted_reply() -> None:
    body = "Le 24/11/2026 \u00e0 10:02, Jeanne a \u00e9crit :\n> question ?\n\nR\u00e9ponse\n"
    assert extract_reply_text(body) == "R\u00e9ponse"
    assert extract_reply_text("> only a quote") == ""


@pytest.mark.parametrize(
    "line",
    [
        "Sent from my iPhone",
        "Sent from my Samsung Galaxy smartphone.",
        "Envoy\u00e9 de mon iPhone",
        "Envoy\u00e9 depuis Yahoo Mail pour Android",
        "Get Outlook for iOS<https://aka.ms/o0ukef>",
        "Get Outlook for Android",
        "Sent from Mail for Windows",
        "Envoy\u00e9 \u00e0 partir de Courrier pour Windows",
        "Von meinem iPhone gesendet",
        "Sent with Proton Mail secure email.",
        "Inviato da iPhone",
        "Enviado desde mi iPhone",
    ],
)
def test_default_signature_lines(line: str) -> None:
    result = extract_text(f"Rendez-vous confirm\u00e9.\n\n{line}")
    assert result.text == "Rendez-vous confirm\u00e9."
    assert result.warnings == ["removed a signature"]


def test_signature_delimiter_without_trailing_space() -> None:
    assert extract_text("Texte\n--\nJeanne\n04 78 00 00 00").text == "Texte"


@pytest.mark.parametrize(
    "paragraph",
    [
        "This e-mail and any attachments are confidential.",
        "CONFIDENTIALITY NOTICE: The information in this message is privileged.",
        "Ce message et toutes les pi\u00e8ces jointes sont confidentiels.",
        "Ce courriel est strictement confidentiel et destin\u00e9 \u00e0 son seul destinataire.",
        "*** Disclaimer: no liability ***",
        "CAUTION: This email originated from outside of the organization.",
    ],
)
def test_default_disclaimers(paragraph: str) -> None:
    result = extract_text(f"Rappel demain 9h.\n\n{paragraph}\nSuite du texte l\u00e9gal.")
    assert result.text == "Rappel demain 9h."
    assert result.warnings == ["removed a legal disclaimer"]


def test_banner_at_the_top_removed_and_text_kept() -> None:
    body = "CAUTION: This email originated from outside of the organization.\n\nRappel 9h."
    assert extract_text(body).text == "Rappel 9h."


def test_body_options_are_configurable() -> None:
    options = BodyOptions(
        signature_patterns=[r"--\s*Cabinet Martin.*"],
        disclaimer_patterns=[r"mentions l[ée]gales"],
        strip_quotes=False,
    )
    body = (
        "Rappel\n> cit\u00e9\nSent from my iPhone\n\nMentions l\u00e9gales : x\n\n"
        "--Cabinet Martin Lyon\nTel 01 23 45 67 89"
    )
    result = extract_text(body, options=options)
    assert result.text == "Rappel\n> cit\u00e9\nSent from my iPhone"
    assert isinstance(options.signature_patterns, tuple)
    assert "Sent from my iPhone" not in extract_text("a\n\nSent from my iPhone").text


def test_default_patterns_exported() -> None:
    assert BodyOptions().signature_patterns == DEFAULT_SIGNATURE_PATTERNS
    assert BodyOptions().disclaimer_patterns == DEFAULT_DISCLAIMER_PATTERNS


def test_invalid_pattern_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="signature_patterns"):
        BodyOptions(signature_patterns=["(unclosed"])


def test_image_placeholders_removed() -> None:
    body = "Cordialement\n[cid:image001.png@01DB3E80.5A6B7C80]\n[image: logo.png]"
    assert extract_text(body).text == "Cordialement"


# -- HTML ------------------------------------------------------------------------------


def test_html_structure() -> None:
    html = (
        "<html><head><title>t</title><style>p{}</style></head><body>"
        "<h1>Titre</h1><p>Un&nbsp;paragraphe &amp; <i>suite</i>\n   sur deux lignes</p>"
        "<ol><li>premier</li><li>second<ul><li>sous-point</li></ul></li></ol>"
        "<table><tr><td>Lundi</td><td>9h</td></tr><tr><td>Mardi</td><td>10h</td></tr></table>"
        "<pre>  a\n  b</pre><div>fin<br/>ligne</div><script>x()</script>"
        '<p><a href="https://example.org/">example.org</a> '
        '<a href="mailto:a@b.fr">\u00e9crire</a> <a href="http://x.fr/rdv">ici</a></p>'
        "</body></html>"
    )
    assert html_to_text(html).text == (
        "Titre\n\nUn paragraphe & suite sur deux lignes\n\n"
        "1. premier\n2. second\n- sous-point\n"
        "Lundi 9h\nMardi 10h\n  a\n  b\nfin\nligne\n\n"
        "example.org \u00e9crire ici (http://x.fr/rdv)"
    )


def test_html_outlook_list_markup() -> None:
    html = (
        "<p class=MsoListParagraph><![if !supportLists]><span>1.<span>&nbsp;&nbsp; </span>"
        "</span><![endif]>Apporter la carte Vitale<o:p></o:p></p>"
        "<p class=MsoNormal>Merci<o:p></o:p></p>"
    )
    assert html_to_text(html).text == "1.   Apporter la carte Vitale\nMerci"


def test_html_unclosed_tags_and_garbage() -> None:
    assert html_to_text("<div>a<p>b<p>c<div><b>d").text == "a\n\nb\n\nc\nd"
    assert html_to_text("<<<>>> </p></div> texte </span>").text == "<<<>>> texte"


def test_html_gmail_forward_is_kept() -> None:
    html = (
        '<div dir="ltr">Pour info</div><br><div class="gmail_quote">'
        '<div dir="ltr" class="gmail_attr">---------- Forwarded message ---------<br>'
        "From: <b>Paul</b><br>Date: Tue, Nov 24, 2026<br></div><br><div>Fermeture</div></div>"
    )
    converted = html_to_text(html)
    assert converted.text == (
        "Pour info\n\n---------- Forwarded message ---------\nFrom: Paul\n"
        "Date: Tue, Nov 24, 2026\n\nFermeture"
    )
    assert converted.removed_quote is False


def test_html_quote_kept_when_not_stripping() -> None:
    html = '<div>Oui</div><blockquote type="cite">question</blockquote>'
    assert extract_text(html, html=True).text == "Oui"
    kept = extract_text(html, html=True, options=BodyOptions(strip_quotes=False))
    assert kept.text == "Oui\nquestion"


# -- charsets, headers, structure ---------------------------------------------------------


def test_decode_bytes_rules() -> None:
    assert (
        decode_bytes(b"25 \x80 l\x92\xe9t\xe9", "iso-8859-1").text
        == "25 \u20ac l\u2019\u00e9t\u00e9"
    )
    assert decode_bytes(b"caf\xc3\xa9", "us-ascii").text == "caf\u00e9"
    assert decode_bytes(b"caf\xc3\xa9", None).text == "caf\u00e9"
    assert decode_bytes(b"caf\xe9", None).text == "caf\u00e9"
    broken = decode_bytes(b"caf\xe9", "utf-8")
    assert broken.text == "caf\u00e9" and broken.warning is not None
    unknown = decode_bytes(b"caf\xc3\xa9", "x-unheard-of")
    assert unknown.text == "caf\u00e9" and "x-unheard-of" in (unknown.warning or "")
    assert decode_bytes(b"\x81\x8d", "windows-1252").text == "\x81\x8d"
    assert decode_bytes("\u00e9".encode("iso-8859-15"), '"ISO-8859-15"').text == "\u00e9"


def test_decode_words() -> None:
    assert decode_words("=?utf-8?B?w6k=?= =?utf-8?B?w6k=?=") == "\u00e9\u00e9"
    assert decode_words("=?utf-8?Q?caf=C3?= =?utf-8?Q?=A9?= ok") == "caf\u00e9 ok"
    assert decode_words("a =?ISO-8859-1?Q?=E9t=E9?= b") == "a \u00e9t\u00e9 b"
    assert decode_words("=?utf-8*fr?Q?=C3=A9?=") == "\u00e9"
    assert decode_words("=?utf-8?B?w6k?=") == "\u00e9"  # missing padding
    assert decode_words("x =?bogus?B?!!!?= y") == "x =?bogus?B?!!!?= y"


def _mail(headers: str, body: bytes = b"Texte\r\n") -> bytes:
    return headers.replace("\n", "\r\n").encode("ascii") + b"\r\n" + body


def test_header_block_without_blank_line() -> None:
    raw = b"From: a@b.fr\nSubject: 0612345678\nBonjour, rappel demain.\nA demain\n"
    mail = parse_mail(raw)
    assert mail.subject == "0612345678"
    assert mail.text == "Bonjour, rappel demain.\nA demain"
    assert any("no blank line" in warning for warning in mail.warnings)


def test_eight_bit_header_in_latin1_and_missing_everything() -> None:
    raw = b"Subject: R\xe9union\r\n\r\n"
    mail = parse_mail(raw)
    assert mail.subject == "R\u00e9union"
    assert mail.from_addr is None and mail.message_id is None and mail.date is None
    assert mail.text == ""
    assert mail.to == [] and mail.references == []


def test_empty_plain_alternative_falls_back_to_html() -> None:
    raw = _mail(
        'Content-Type: multipart/alternative; boundary="b"\n',
        b"--b\r\nContent-Type: text/plain\r\n\r\n \r\n--b\r\nContent-Type: text/html\r\n\r\n"
        b"<p>Rappel <b>demain</b></p>\r\n--b--\r\n",
    )
    mail = parse_mail(raw)
    assert mail.text == "Rappel demain"
    assert mail.html_only is True and mail.body_type == "text/html"


def test_attached_mail_and_rfc2231_filename() -> None:
    raw = _mail(
        'Content-Type: multipart/mixed; boundary="m"\n',
        b"--m\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nVoir pi\xc3\xa8ces\r\n"
        b"--m\r\nContent-Type: message/rfc822\r\n\r\nSubject: Ancien\r\n\r\nvieux\r\n"
        b"--m\r\nContent-Type: application/pdf\r\n"
        b"Content-Disposition: attachment; filename*=utf-8''r%C3%A9sultats.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--m--\r\n",
    )
    mail = parse_mail(raw)
    assert mail.text == "Voir pi\u00e8ces"
    assert mail.attachments == [
        Attachment("Ancien.eml", "message/rfc822", len(b"Subject: Ancien\r\n\r\nvieux")),
        Attachment("r\u00e9sultats.pdf", "application/pdf", 5),
    ]
    assert "attachment r\u00e9sultats.pdf ignored" in mail.warnings


def test_addresses_cc_reply_to_and_references() -> None:
    raw = _mail(
        'From: "Durand, Jeanne" <Jeanne.Durand@Example.FR>\n'
        "To: a@x.fr, =?utf-8?Q?Z=C3=A9?= <z@X.fr>\n"
        "Cc: undisclosed-recipients:;\nCc: c@x.fr\n"
        "Reply-To: <r@x.fr>\n"
        "Message-ID: 1234@broken\n"
        "References: <a@x> <b@x>\n\t<c@x>\n"
        "Date: Tue, 24 Nov 2026 10:02:00 -0000\n"
    )
    mail = parse_mail(raw)
    assert mail.from_display == "Durand, Jeanne"
    assert mail.from_addr == "Jeanne.Durand@example.fr"
    assert mail.to == ["a@x.fr", "z@x.fr"]
    assert mail.cc == ["c@x.fr"]
    assert mail.reply_to == ["r@x.fr"]
    assert mail.message_id == "1234@broken"
    assert mail.references == ["a@x", "b@x", "c@x"]
    assert mail.date == datetime(2026, 11, 24, 10, 2, tzinfo=UTC)
    assert mail.date.utcoffset() == timedelta(0)


# -- normalize and flowed ------------------------------------------------------------------


def test_normalize_whitespace_rules() -> None:
    text = "\r\n\r\n  \nA\u00a0b \t\r\n\u200bC\u200d\r\rD\n\n\n\nE\u2028F\n\n"
    assert normalize_whitespace(text) == "A b\nC\n\nD\n\nE\nF"
    assert normalize_whitespace("\U0001f469\u200d\U0001f4bb") == "\U0001f469\u200d\U0001f4bb"
    assert normalize_whitespace("\U0001f3f3\ufe0f\u200d\U0001f308") == (
        "\U0001f3f3\ufe0f\u200d\U0001f308"
    )


def test_unflow() -> None:
    flowed = "Une ligne \ncontinu\u00e9e\n> cit\u00e9 \n> suite\n-- \nsig\n stuffed"
    assert unflow(flowed) == "Une ligne continu\u00e9e\n> cit\u00e9 suite\n-- \nsig\nstuffed"
    assert unflow("mot \ncoup\u00e9", delsp=True) == "motcoup\u00e9"
    assert unflow("fin flottante ") == "fin flottante "
    # A flowed line followed by another quote depth ends the paragraph as it is.
    assert unflow("a \n> b") == "a \n> b"


# -- subject grammar ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "numbers", "unknown"),
    [
        ("06 98 76 54 32", ["06 98 76 54 32"], []),
        ("+33612345678 0698765432", ["+33612345678", "0698765432"], []),
        ("06 12 34 56 78 06 98 76 54 32", ["06 12 34 56 78", "06 98 76 54 32"], []),
        ("+33 (0)6 12 34 56 78", ["+33 (0)6 12 34 56 78"], []),
        ("+33 6 12 34 50 07 +33 6 98 76 54 32", ["+33 6 12 34 50 07", "+33 6 98 76 54 32"], []),
        ("06.12.34.56.78,06-98-76-54-32", ["06.12.34.56.78", "06-98-76-54-32"], []),
        ("0612345678\n0698765432;0781223344", ["0612345678", "0698765432", "0781223344"], []),
        ("06 12 34 56 78  07 81 22 33 44", ["06 12 34 56 78", "07 81 22 33 44"], []),
        ("06 12 34 56 78\t07 81 22 33 44", ["06 12 34 56 78", "07 81 22 33 44"], []),
        ("0151 12345678", ["0151 12345678"], []),
        ("07700 900123", ["07700 900123"], []),
        ("0033 6 12 34 56 78", ["0033 6 12 34 56 78"], []),
        ("RDV 15 0612345678", ["15", "0612345678"], ["RDV"]),
        ("Rappel 15h 0612345678", ["0612345678"], ["Rappel", "15h"]),
        ("06\u00a012\u00a034\u00a056\u00a078", ["06 12 34 56 78"], []),
        ("RE: TR: Fwd: 0612345678", ["0612345678"], []),
        ("Re : AW:WG: 0612345678", ["0612345678"], []),
        ("", [], []),
        ("Fwd: Re:", [], []),
    ],
)
def test_subject_numbers(subject: str, numbers: list[str], unknown: list[str]) -> None:
    parts = parse_subject(subject)
    assert parts.numbers == numbers
    assert parts.unknown == unknown


def test_subject_tokens_and_lists() -> None:
    parts = parse_subject(
        'Re: PIN:1234, sender="Cabinet Martin" list:lundi List=mardi type: alert '
        "0612345678 foo:bar pin=9999 pin:1234 sender:"
    )
    assert parts.prefixes == ["Re"]
    assert parts.tokens == {"pin": "1234", "sender": "Cabinet Martin", "type": "alert"}
    assert parts.lists == ["lundi", "mardi"]
    assert parts.numbers == ["0612345678"]
    assert parts.unknown == ["foo:bar", "pin=9999", "sender:"]


def test_subject_custom_grammar() -> None:
    grammar = SubjectGrammar(keys=frozenset({"Campagne"}), list_key="groupe", strip_prefixes=False)
    parts = parse_subject("RE: campagne:noel groupe:vip list:x pin:1", grammar)
    assert parts.tokens == {"campagne": "noel"}
    assert parts.lists == ["vip"]
    assert parts.unknown == ["RE:", "list:x", "pin:1"]
    with pytest.raises(ConfigError):
        SubjectGrammar(keys=frozenset({"bad key"}))


def test_strip_prefixes() -> None:
    assert strip_prefixes("RE: Fwd: TR:  Bonjour") == ("Bonjour", ["RE", "Fwd", "TR"])
    assert strip_prefixes("Rendez-vous: demain") == ("Rendez-vous: demain", [])
    assert strip_prefixes("Retour: x") == ("Retour: x", [])


# -- properties ---------------------------------------------------------------------------

_TEXTISH = st.text(
    alphabet=st.sampled_from(
        list("ab \t\r\n\u00a0\u200b\u200d\u2028\ufeff\u202f\U0001f469\ufe0f-\u00e9")
    ),
    max_size=60,
)


@given(st.one_of(_TEXTISH, st.text(max_size=80)))
def test_normalize_whitespace_is_idempotent(text: str) -> None:
    once = normalize_whitespace(text)
    assert normalize_whitespace(once) == once
    assert "\r" not in once and "\n\n\n" not in once
    assert not once.startswith("\n") and not once.endswith("\n")
    assert all(line == line.rstrip(" \t") for line in once.split("\n"))


_NO_KEYS = SubjectGrammar(keys=frozenset(), list_key=None)


def _digits(text: str) -> list[str]:
    return sorted(char for char in text if char.isdigit())


_SUBJECTISH = st.text(
    alphabet=st.sampled_from(list('0123456789+()-. ,;:=\n\t"abRE\u00a0\u0663\u00b2')), max_size=50
)


@given(st.one_of(_SUBJECTISH, st.text(max_size=60)))
def test_parse_subject_keeps_every_digit(subject: str) -> None:
    parts = parse_subject(subject, _NO_KEYS)
    assert parts.tokens == {} and parts.lists == []
    assert _digits("".join(parts.numbers + parts.unknown)) == _digits(subject)
    for number in parts.numbers:
        assert re.fullmatch(r"\+?[\d().\- ]+", number)


@given(st.one_of(_SUBJECTISH, st.text(max_size=60)))
def test_parse_subject_never_raises_with_default_grammar(subject: str) -> None:
    parts = parse_subject(subject)
    found = "".join(parts.numbers + parts.unknown + parts.lists + list(parts.tokens.values()))
    assert set(_digits(found)) <= set(_digits(subject))


_WORDS = st.sampled_from(
    [
        "Bonjour",
        "rendez-vous",
        "demain",
        "9h30",
        "au",
        "cabinet",
        "merci",
        "Jeanne",
        "!",
        "25",
        "\u20ac",
        "caf\u00e9",
        "\U0001f389",
        "l\u2019\u00e9quipe",
        "(rappel)",
        "tel.",
        "0612345678",
    ]
)
_SPACES = st.sampled_from([" ", "  ", " \t", "\u00a0", "\u200b", " \u200b "])
_BREAKS = st.sampled_from(["\n", "\r\n", "\n\n", "\n \n\n\n", "\r\n\r\n"])
_LINE = st.lists(_WORDS, min_size=1, max_size=6).flatmap(
    lambda words: st.lists(_SPACES, min_size=len(words), max_size=len(words)).map(
        lambda gaps: "".join(word + gap for word, gap in zip(words, gaps, strict=True))
    )
)


@given(st.lists(st.tuples(_LINE, _BREAKS), min_size=1, max_size=8))
def test_plain_text_without_quotes_or_signature_is_only_normalized(
    lines: list[tuple[str, str]],
) -> None:
    body = "".join(line + brk for line, brk in lines)
    result = extract_text(body)
    assert result.text == normalize_whitespace(body)
    assert result.warnings == []
    assert extract_reply_text(body) == result.text


_MAILISH = st.lists(
    st.sampled_from(
        [
            b"Subject: ",
            b"=?utf-8?B?w6k=?=",
            b"=?x?Q?",
            b"Content-Type: multipart/mixed; boundary=b\r\n",
            b"Content-Type: text/html; charset=bogus\r\n",
            b"Content-Transfer-Encoding: base64\r\n",
            b"--b\r\n",
            b"\r\n",
            b"\n",
            b": ",
            b"<p>",
            b"\xe9\xff",
            b"> ",
            b"On 1 Jan wrote:",
            b"0612345678",
        ]
    ),
    max_size=30,
).map(b"".join)


@given(st.one_of(_MAILISH, st.binary(max_size=300)))
def test_parse_mail_never_raises(raw: bytes) -> None:
    mail = parse_mail(raw)
    assert mail.text == normalize_whitespace(mail.text)
    parse_subject(mail.subject)
    extract_reply_text(mail)


@given(st.text(alphabet=st.sampled_from(list("<>/=\"' abpdivbrq&;#x0\n")), max_size=80))
def test_html_to_text_never_raises(markup: str) -> None:
    text = html_to_text(markup).text
    assert text == normalize_whitespace(text)


def test_uuencoded_file_is_an_attachment_with_its_bytes() -> None:
    from hub.campaigns.links import mail_attachments

    raw = (MAIL_DIR / "uuencoded_attachment.eml").read_bytes()
    mail = load("uuencoded_attachment.eml")
    assert [(a.filename, a.content_type) for a in mail.attachments] == [("plan.png", "image/png")]
    [found] = mail_attachments(raw)
    assert found.filename == "plan.png" and found.data.startswith(b"\x89PNG\r\n")
    assert "begin 644" not in mail.body


def test_obsolete_header_names_are_read() -> None:
    mail = load("obsolete_header_syntax.eml")
    assert mail.from_addr == "marcs@znep.example"
    assert mail.to == ["sms@hub.example.com"]
    assert mail.subject == "0612345678"
