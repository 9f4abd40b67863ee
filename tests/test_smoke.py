from support import Api


async def test_tender_happy_path(api: Api) -> None:
    answer = await api.tender()
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"]["posStatus"] == "Accepted"
