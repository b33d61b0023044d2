"""Import every table module so that ``Base.metadata`` knows the whole schema (for Alembic)."""

from glucoshare.accounts import models as accounts_models
from glucoshare.audit import models as audit_models
from glucoshare.datasets import models as datasets_models
from glucoshare.db.base import Base
from glucoshare.devices import models as devices_models
from glucoshare.ingest import models as ingest_models
from glucoshare.nightscout import models as nightscout_models
from glucoshare.records import models as records_models
from glucoshare.reports import models as reports_models
from glucoshare.sharing import models as sharing_models
from glucoshare.summaries import models as summaries_models
from glucoshare.vault import models as vault_models

__all__ = [
    "Base",
    "accounts_models",
    "audit_models",
    "datasets_models",
    "devices_models",
    "ingest_models",
    "nightscout_models",
    "records_models",
    "reports_models",
    "sharing_models",
    "summaries_models",
    "vault_models",
]
