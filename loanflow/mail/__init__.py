"""Borrower e-mail: rendering notices from `templates/`, building MIME messages, sending them
over SMTP, the outbox, the local mail sink and previews; `delivery` ties these together, for the
notice activity (`activities.notify`) and `loanflow mail resend`."""
