"""Dreamscape's CI/CD as Pulumi components: settings, rules, and the resources built from them."""
