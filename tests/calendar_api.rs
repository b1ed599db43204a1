//! The calendar API.

use test_support::inprocess::spawn_calendar;
use test_support::{send, Reply};

const PLAIN: &str = "text/plain; charset=utf-8";

#[tokio::test]
async fn routes_and_bodies() {
    let base = spawn_calendar().await;
    let client = reqwest::Client::new();
    assert_eq!(
        send(&client, "GET", &format!("{base}/"), &[]).await,
        Reply::plain(200, "Welcome to the calendar app!")
    );
    assert_eq!(
        send(&client, "POST", &format!("{base}/calendar"), &[])
            .await
            .status,
        405
    );
    assert_eq!(
        send(&client, "GET", &format!("{base}/nope"), &[])
            .await
            .status,
        404
    );
    assert_eq!(
        send(&client, "GET", &format!("{base}/health"), &[])
            .await
            .status,
        200
    );
    let Reply {
        status,
        content_type: ctype,
        body,
    } = send(
        &client,
        "GET",
        &format!("{base}/calendar"),
        &[("Accept", "application/json")],
    )
    .await;
    assert_eq!((status, ctype.as_str()), (200, "application/json"));
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let date = json["date"].as_str().unwrap();
    assert!(
        chrono::NaiveDate::parse_from_str(date, "%m/%d/%Y").is_ok(),
        "{body}"
    );
}

#[tokio::test]
async fn dates_are_zero_padded_and_within_2022_to_new_year_2023() {
    let base = spawn_calendar().await;
    let client = reqwest::Client::new();
    let first = chrono::NaiveDate::from_ymd_opt(2022, 1, 1).unwrap();
    let last = chrono::NaiveDate::from_ymd_opt(2023, 1, 1).unwrap();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..300 {
        let Reply {
            status,
            content_type: ctype,
            body,
        } = send(&client, "GET", &format!("{base}/calendar"), &[]).await;
        assert_eq!((status, ctype.as_str()), (200, PLAIN));
        assert_eq!(body.len(), 10, "{body:?}");
        let date = chrono::NaiveDate::parse_from_str(&body, "%m/%d/%Y").unwrap();
        assert!(date >= first && date <= last, "{date}");
        seen.insert(date);
    }
    // 300 draws from 366 days: a constant or narrow generator would fail this.
    assert!(seen.len() > 150, "only {} distinct dates", seen.len());
}
