"""Personalised sends to many: contact lists and their imports, saved templates with merge
fields, campaigns and their reports, hosted files, short links, clicks and unsubscribe links.
It may import the sending core and everything below it.
"""
