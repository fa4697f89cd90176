from tests import factories


def test_signed_up_customer_sees_dashboard(logged_in, customer):
    response = logged_in.get("/")
    assert response.status_code == 200
    assert "Profile completeness" in response.get_data(as_text=True)


def test_profile_round_trip(logged_in, customer):
    response = factories.post_form(
        logged_in, "/profile", {"email": customer.email, "given_name": "Zebulon"}
    )
    assert response.status_code == 302
    assert 'value="Zebulon"' in logged_in.get("/profile").get_data(as_text=True)
