"""An update re-reads contact data in the context of the whole stored lead."""


def test_update_keeps_bad_signals(client, admin):
    h = admin.headers
    r = client.post(
        "/api/leads", json={"first_name": "Ada", "email": "ada@acme-corp.com", "country": "DE"}, headers=h
    )
    assert r.json()["bad_candidate_reasons"] is None
    r = client.patch(f"/api/leads/{r.json()['id']}", json={"first_name": "Adele", "version": 1}, headers=h)
    assert r.status_code == 200 and r.json()["bad_candidate_reasons"] is None, r.json()
    r = client.patch(f"/api/leads/{r.json()['id']}", json={"phone": "030 1234567", "version": 2}, headers=h)
    assert r.json()["phone"] == "+49301234567", r.json()
    r = client.patch(
        f"/api/leads/{r.json()['id']}", json={"email": "test@example.com", "version": 3}, headers=h
    )
    assert "placeholder" in " ".join(r.json()["bad_candidate_reasons"]), r.json()
