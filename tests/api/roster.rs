//! Roster import (HTTP and CLI) and listing.

use crate::backend_tests;
use crate::helpers::{Backend, Fixture, TOKEN, TestApp};
use serde_json::Value;

backend_tests!(
    a_valid_roster_is_imported_whole,
    a_roster_with_bad_lines_imports_nothing_and_names_them,
    the_cli_imports_and_lists_through_the_same_rules,
    a_roster_of_several_inserts_comes_back_in_its_order,
);

async fn import(app: &TestApp, csv: &str) -> reqwest::Response {
    app.client
        .post(app.url("/students/import"))
        .bearer_auth(TOKEN)
        .header("content-type", "text/csv")
        .body(csv.to_owned())
        .send()
        .await
        .unwrap()
}

async fn a_valid_roster_is_imported_whole(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let app = fixture.spawn(|_| {}).await;
    let csv = "\u{feff}nickname,first_name,last_name,email\r\n\
               ada,Ada,\"Lovelace-Byron\",ada@example.org\r\n\
               alan,Alan,Turing,alan@example.org\r\n";
    let response = import(&app, csv).await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    let created = body["created"].as_array().unwrap();
    assert_eq!(created.len(), 2);
    assert_eq!(created[0]["nickname"], "ada");
    assert_eq!(created[0]["last_name"], "Lovelace-Byron");
    let code = created[1]["upload_code"].as_str().unwrap();
    assert!(exam_depository::domain::codes::looks_like_upload_code(code));
    app.upload_ok(code, vec![1, 2, 3]).await;

    let unauthenticated = app
        .client
        .post(app.url("/students/import"))
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    let huge = format!(
        "nickname,first_name,last_name,email\n{}",
        "x".repeat(3 * 1024 * 1024)
    );
    assert_eq!(import(&app, &huge).await.status(), 413);
}

async fn a_roster_with_bad_lines_imports_nothing_and_names_them(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let app = fixture.spawn(|_| {}).await;
    app.create_student("taken").await;
    let csv = "nickname,first_name,last_name,email\n\
               fine,Fine,Person,fine@example.org\n\
               bad nick,Bad,Nick,bad@example.org\n\
               TAKEN,Dup,Existing,other@example.org\n\
               twin,Twin,One,twin@example.org\n\
               twin2,Twin,Two,TWIN@example.org\n\
               short,row\n";
    let response = import(&app, csv).await;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    let lines: Vec<i64> = body["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["line"].as_i64().unwrap())
        .collect();
    assert_eq!(
        lines,
        [3, 6, 7],
        "syntax, validation and in-file duplicates first"
    );
    assert!(
        body["detail"][1]["message"]
            .as_str()
            .unwrap()
            .contains("line 5")
    );

    // Once the file itself is clean, clashes with registered students are named.
    let csv = "nickname,first_name,last_name,email\n\
               fine,Fine,Person,fine@example.org\n\
               TAKEN,Dup,Existing,other@example.org\n\
               new,New,Person,Taken@example.org\n";
    let response = import(&app, csv).await;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    let detail = body["detail"].as_array().unwrap();
    assert_eq!(detail.len(), 2);
    assert_eq!(detail[0]["line"], 3);
    assert!(detail[0]["message"].as_str().unwrap().contains("nickname"));
    assert_eq!(detail[1]["line"], 4);
    assert!(detail[1]["message"].as_str().unwrap().contains("email"));

    let list: Value = app.get_as_examiner("/students").await.json().await.unwrap();
    assert_eq!(list["totals"]["total_students"], 1, "all or nothing");

    let response = import(&app, "name,email\nx,y\n").await;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["detail"][0]["line"], 1);
}

async fn the_cli_imports_and_lists_through_the_same_rules(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let app = fixture.spawn(|_| {}).await;
    let file = fixture.data_dir.path().join("roster.csv");
    std::fs::write(
        &file,
        "nickname,first_name,last_name,email\nzoe,Zoë,Ng,zoe@example.org\n",
    )
    .unwrap();
    let run = |args: &[&str]| fixture.cli(args);
    let imported = run(&["import", file.to_str().unwrap()]);
    assert!(imported.status.success(), "{imported:?}");
    let stdout = String::from_utf8(imported.stdout).unwrap();
    let code = stdout
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .nth(1)
        .unwrap()
        .to_owned();
    app.upload_ok(&code, vec![9; 10]).await;

    let again = run(&["import", file.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("line 2: a student with nickname \"zoe\" already exists"),
        "{stderr}"
    );

    let listed = run(&["students", "list"]);
    assert!(listed.status.success());
    let text = String::from_utf8(listed.stdout).unwrap();
    assert!(
        text.contains(&format!("zoe,Zoë,Ng,zoe@example.org,{code},1,")),
        "{text}"
    );
}

/// An import larger than one INSERT (500 students) answers in the roster's order, each
/// student with their own upload code, and records the imports in that order.
async fn a_roster_of_several_inserts_comes_back_in_its_order(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let app = fixture.spawn(|_| {}).await;
    let count = 1201;
    // Nicknames whose sorted order differs from the roster's.
    let nickname = |i: usize| format!("n{}", (i * 7919) % 100_000);
    // A first name of letters only, different for every line.
    let first_name = |i: usize| {
        let mut name = String::from("F");
        let mut n = i;
        loop {
            name.push(char::from(b'a' + (n % 26) as u8));
            n /= 26;
            if n == 0 {
                break name;
            }
        }
    };
    let mut csv = String::from("nickname,first_name,last_name,email\n");
    for i in 0..count {
        let (nickname, first_name) = (nickname(i), first_name(i));
        csv.push_str(&format!(
            "{nickname},{first_name},Last,{nickname}@example.org\n"
        ));
    }
    let response = import(&app, &csv).await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    let created = body["created"].as_array().unwrap();
    assert_eq!(created.len(), count);
    for (i, student) in created.iter().enumerate() {
        assert_eq!(student["nickname"], nickname(i), "line {i}");
        assert_eq!(student["first_name"], first_name(i), "line {i}");
    }
    let codes: std::collections::HashSet<&str> = created
        .iter()
        .map(|s| s["upload_code"].as_str().unwrap())
        .collect();
    assert_eq!(codes.len(), count, "every student has a code of their own");
    for i in [0, 499, 500, 1000, count - 1] {
        let code = created[i]["upload_code"].as_str().unwrap();
        let status = app.get_json(&format!("/submissions/{code}")).await;
        assert_eq!(status["student"]["nickname"], nickname(i), "{status}");
        assert_eq!(status["student"]["first_name"], first_name(i), "{status}");
    }
    let mut subjects = Vec::new();
    for after in [0, 1000] {
        let page: Value = app
            .get_as_examiner(&format!("/audit?after={after}&limit=1000"))
            .await
            .json()
            .await
            .unwrap();
        for event in page["events"].as_array().unwrap() {
            subjects.push(event["subject"].as_str().unwrap().to_owned());
        }
    }
    let expected: Vec<String> = (0..count)
        .map(|i| format!("student:{}", nickname(i)))
        .collect();
    assert_eq!(subjects, expected);
}
