"""Continuity: the business continuity plan and the risk register as reviewed data, checked
against real evidence (drills, backups, restores), and the security records of chapter 3
(insurance, training, vulnerabilities, software updates) with reminders to their owners."""
