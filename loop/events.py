"""State changes as audit events with past-tense names."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from storage.models import AuditEvent

FATIGUE_DETECTED = "FatigueDetected"
VARIANTS_GENERATED = "VariantsGenerated"
GENERATION_FAILED = "GenerationFailed"
ARMS_LAUNCHED = "ArmsLaunched"
ALLOCATION_SET = "AllocationSet"
DELIVERY_MISMATCH = "DeliveryMismatchFlagged"
WINNER_DECLARED = "WinnerDeclared"
PRO_RENDERED = "ProRendered"
APPROVAL_REQUESTED = "ApprovalRequested"
APPROVED = "Approved"
REJECTED = "Rejected"
WINNER_SCALED = "WinnerScaled"
EXPERIMENT_ABANDONED = "ExperimentAbandoned"
CAP_REACHED = "CapReached"
BUDGET_WAITING = "BudgetWaiting"  # a period cap is used: the experiment waits for the next period
BUDGET_RESUMED = "BudgetResumed"  # the caps have room again: the waiting experiment goes on
SPEND_RECONCILED = "SpendReconciled"
MUTATION_FAILED = "MutationFailed"
CAMPAIGN_HALTED = "CampaignHalted"
CAMPAIGN_RESUMED = "CampaignResumed"
TEST_PLANNED = "TestPlanned"
ARMS_ELIMINATED = "ArmsEliminated"
DRAFTS_SELECTED = "DraftsSelected"  # the trait model chose which drafts to test (issue 17)


def record(
    session: Session,
    name: str,
    campaign_id: str | None = None,
    experiment_id: str | None = None,
    actor: str = "loop",
    **data: Any,
) -> AuditEvent:
    event = AuditEvent(name=name, campaign_id=campaign_id, experiment_id=experiment_id, actor=actor, data=data)
    session.add(event)
    return event
