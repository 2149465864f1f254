"""Pure rules of extraction: when an append triggers it, job ids, matching."""

from __future__ import annotations

from server.extraction.reconcile import more_specific, same_value
from server.extraction.triggers import crosses_threshold
from server.job_queue import extraction_job_id


def test_an_append_triggers_once_per_threshold_of_unextracted_messages() -> None:
    def fires(count: int, appended: int, extracted: int = 0) -> bool:
        return crosses_threshold(
            message_count=count, appended=appended, extracted_seq=extracted, every=8
        )

    assert not fires(7, 7)
    assert fires(8, 1)  # reaches 8
    assert fires(20, 20)  # one big append
    assert not fires(9, 1)  # still waiting for the job it triggered
    assert fires(16, 1)  # extraction lags: once more at 16
    assert not fires(12, 1, extracted=8)  # 4 waiting since the last job
    assert fires(16, 4, extracted=8)


def test_session_job_ids_never_collide_across_users_and_sessions() -> None:
    assert extraction_job_id(user_id="a:b", session_id="c") != extraction_job_id(
        user_id="a", session_id="b:c"
    )
    assert extraction_job_id(user_id="u", session_id="s") == extraction_job_id(
        user_id="u", session_id="s", job_id="ignored"
    )
    assert extraction_job_id(user_id="u", session_id="", job_id="j1") == "extract:job:j1"


def test_fact_values_compare_up_to_case_and_punctuation() -> None:
    assert same_value("The user lives in Lisbon.", "the user lives in lisbon")
    assert not same_value("The user lives in Lisbon.", "The user lives in Berlin.")


def test_a_wording_is_more_specific_when_it_says_all_of_the_old_and_more() -> None:
    assert more_specific("The user loves hiking in the Alps.", "The user loves hiking.")
    assert not more_specific("The user loves hiking.", "The user loves hiking.")
    assert not more_specific("The user loves sailing and more.", "The user loves hiking.")
