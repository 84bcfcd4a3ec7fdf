"""Documents made from an incident's record: the postmortem (Markdown and HTML) and the
Japanese system-failure report for the regulator, both drafts for a person to review, and
their routes (``views``)."""
