"""Every drill scenario by the name ``haltguard drill`` takes, in the manual's order."""

from __future__ import annotations

from haltguard.drill.scenario import Scenario
from haltguard.drill.scenarios.database_down import SCENARIO as DATABASE_DOWN
from haltguard.drill.scenarios.ddos import SCENARIO as DDOS
from haltguard.drill.scenarios.disk_loss import SCENARIO as DISK_LOSS
from haltguard.drill.scenarios.market_volatility import SCENARIO as MARKET_VOLATILITY
from haltguard.drill.scenarios.market_volatility import (
    SCENARIO_WITH_CORRECTION as MARKET_VOLATILITY_CORRECTION,
)
from haltguard.drill.scenarios.server_down import SCENARIO as SERVER_DOWN
from haltguard.drill.scenarios.site_loss import PARTITION, SITE_LOSS
from haltguard.drill.scenarios.software_bug import SCENARIO as SOFTWARE_BUG
from haltguard.drill.scenarios.surge import SCENARIO as SURGE
from haltguard.drill.scenarios.unauthorized_access import SCENARIO as UNAUTHORIZED_ACCESS

SCENARIOS: dict[str, Scenario] = {
    scenario.name: scenario
    for scenario in (SERVER_DOWN, DATABASE_DOWN, SOFTWARE_BUG, UNAUTHORIZED_ACCESS, DDOS,
                     MARKET_VOLATILITY, SURGE, DISK_LOSS, MARKET_VOLATILITY_CORRECTION,
                     SITE_LOSS, PARTITION)
}
