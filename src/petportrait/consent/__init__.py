"""Marketing consent and support-case access: what a person lets staff see, and the receipts for it.

- Marketing staff file a request naming exact items, channels, a purpose and the notice version shown;
  the person grants or declines each item in their inbox. A grant makes a consent (with a Kantara-style
  receipt) and a copy in the marketing library (blob prefix `marketing/`), kept while the consent stands.
  Withdrawing deletes the copy through `lifecycle.service.delete_now`.
- Support cases: a person opens one naming items; support staff may view those items while it is open,
  at most 7 days.
"""
