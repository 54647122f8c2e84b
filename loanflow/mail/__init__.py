"""Borrower e-mail: rendering notices from `templates/`, building MIME messages, sending them
over SMTP, the outbox, the local mail sink and previews. The notice activity that ties these
together is `activities.notify.NotifyActivities`."""
